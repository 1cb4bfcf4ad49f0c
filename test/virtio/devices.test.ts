// Device models against the fake driver: what each does for a well-behaved driver, and the
// hostile-driver rule: random chains, random ring bytes, random kicks, resets and config
// accesses never make an exception escape, never hang, and the device works again after a
// reset.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { MemoryBlockBackend } from '../../src/virtio/devices/blk/block-backend.js';
import { BlkDevice, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_MQ, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP } from '../../src/virtio/devices/blk/blk-device.js';
import { ConsoleDevice, ControlEvent, VIRTIO_CONSOLE_F_MULTIPORT } from '../../src/virtio/devices/console/console-device.js';
import { FsDevice, type FuseRequestHandler } from '../../src/virtio/devices/fs/fs-device.js';
import type { QueueDevice } from '../../src/virtio/devices/queue-device.js';
import { RngDevice } from '../../src/virtio/devices/rng/rng-device.js';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1 } from '../../src/virtio/queue/features.js';
import { consoleControl, fakeDriver, type FakeDriver } from './fake-driver.js';

const BASE = VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC | VIRTIO_F_EVENT_IDX;
const quiet = { log: () => {} };

function header(type: number, sector: bigint): Uint8Array {
  const h = new Uint8Array(16);
  const v = new DataView(h.buffer);
  v.setUint32(0, type, true);
  v.setBigUint64(8, sector, true);
  return h;
}

test('virtio-rng fills writable buffers with random bytes', () => {
  const device = new RngDevice(quiet);
  const driver = fakeDriver(1, 16, BASE);
  device.activate(driver.context);
  const { addresses } = driver.queues[0]!.post([{ length: 4096, writable: true }]);
  device.notify(0);
  assert.deepEqual(driver.queues[0]!.takeUsed(), [{ id: 0, length: 4096 }]);
  const bytes = driver.memory.read(addresses[0]!, 4096);
  assert.ok(new Set(bytes).size > 200);
  assert.deepEqual(driver.notified, [0]);
});

test('virtio-blk: IN/OUT/FLUSH/GET_ID/DISCARD/WRITE_ZEROES and errors, across two queues', () => {
  const disk = new MemoryBlockBackend(1 << 20);
  for (let i = 0; i < disk.bytes.length; i++) disk.bytes[i] = i & 0xff;
  const device = new BlkDevice(disk, { ...quiet, queues: 2, serial: 'serial-123' });
  assert.ok((device.deviceFeatures & VIRTIO_BLK_F_MQ) !== 0n && (device.deviceFeatures & VIRTIO_BLK_F_FLUSH) !== 0n);
  const config = new Uint8Array(8);
  device.readConfig(0, config);
  assert.equal(new DataView(config.buffer).getBigUint64(0, true), 2048n);
  const driver = fakeDriver(2, 16, BASE);
  device.activate(driver.context);
  const q = driver.queues[1]!;
  const status = (address: number) => driver.memory.readU8(address);
  // IN: sectors 2..3 -> guest.
  let posted = q.post([{ length: 16, writable: false, data: header(0, 2n) }, { length: 1024, writable: true }, { length: 1, writable: true }]);
  device.notify(1);
  assert.deepEqual(q.takeUsed(), [{ id: posted.head, length: 1025 }]);
  assert.equal(status(posted.addresses[2]!), VIRTIO_BLK_S_OK);
  assert.deepEqual(driver.memory.read(posted.addresses[1]!, 1024), disk.bytes.slice(1024, 2048));
  // OUT through an indirect table.
  const payload = new Uint8Array(512).fill(0x5a);
  posted = q.post([{ length: 16, writable: false, data: header(1, 10n) }, { length: 512, writable: false, data: payload }, { length: 1, writable: true }], { indirect: true });
  device.notify(1);
  assert.equal(q.takeUsed()[0]!.length, 1);
  assert.equal(status(posted.addresses[2]!), VIRTIO_BLK_S_OK);
  assert.deepEqual(disk.bytes.slice(5120, 5632), payload);
  // FLUSH, GET_ID.
  posted = q.post([{ length: 16, writable: false, data: header(4, 0n) }, { length: 1, writable: true }]);
  device.notify(1);
  assert.equal(status(posted.addresses[1]!), VIRTIO_BLK_S_OK);
  assert.equal(disk.flushes, 1);
  posted = q.post([{ length: 16, writable: false, data: header(8, 0n) }, { length: 20, writable: true }, { length: 1, writable: true }]);
  device.notify(1);
  assert.equal(new TextDecoder().decode(driver.memory.read(posted.addresses[1]!, 10)), 'serial-123');
  q.takeUsed();
  // WRITE_ZEROES of sectors 0..1 with unmap.
  const seg = new Uint8Array(16);
  new DataView(seg.buffer).setBigUint64(0, 0n, true);
  new DataView(seg.buffer).setUint32(8, 2, true);
  new DataView(seg.buffer).setUint32(12, 1, true);
  posted = q.post([{ length: 16, writable: false, data: header(13, 0n) }, { length: 16, writable: false, data: seg }, { length: 1, writable: true }]);
  device.notify(1);
  assert.equal(status(posted.addresses[2]!), VIRTIO_BLK_S_OK);
  assert.ok(disk.bytes.subarray(0, 1024).every((b) => b === 0));
  // DISCARD with the unmap flag is UNSUPP (§5.2.6.2); out-of-range IN is IOERR; unknown type UNSUPP.
  posted = q.post([{ length: 16, writable: false, data: header(11, 0n) }, { length: 16, writable: false, data: seg }, { length: 1, writable: true }]);
  device.notify(1);
  assert.equal(status(posted.addresses[2]!), VIRTIO_BLK_S_UNSUPP);
  for (const [type, sector, len] of [[0, 2047n, 1024], [0, 2n ** 63n, 512], [1, 2048n, 512], [0, 0n, 100]] as const) {
    posted = q.post([{ length: 16, writable: false, data: header(type, sector) }, { length: len, writable: type === 0, data: type === 0 ? undefined : new Uint8Array(len) }, { length: 1, writable: true }]);
    device.notify(1);
    assert.equal(status(posted.addresses[2]!), VIRTIO_BLK_S_IOERR, `type ${type} sector ${sector} len ${len}`);
  }
  posted = q.post([{ length: 16, writable: false, data: header(99, 0n) }, { length: 1, writable: true }]);
  device.notify(1);
  assert.equal(status(posted.addresses[1]!), VIRTIO_BLK_S_UNSUPP);
  assert.equal(driver.resets.length, 0);
  // Queue 0 works too.
  posted = driver.queues[0]!.post([{ length: 16, writable: false, data: header(0, 0n) }, { length: 512, writable: true }, { length: 1, writable: true }]);
  device.notify(0);
  assert.equal(status(posted.addresses[2]!), VIRTIO_BLK_S_OK);
});

test('virtio-blk read-only: writes fail with IOERR', () => {
  const device = new BlkDevice(new MemoryBlockBackend(1 << 16, true), quiet);
  const driver = fakeDriver(1, 16, BASE);
  device.activate(driver.context);
  const posted = driver.queues[0]!.post([{ length: 16, writable: false, data: header(1, 0n) }, { length: 512, writable: false }, { length: 1, writable: true }]);
  device.notify(0);
  assert.equal(driver.memory.readU8(posted.addresses[2]!), VIRTIO_BLK_S_IOERR);
});

test('virtio-console multiport: handshake, port names, data both ways, open/close, resize', () => {
  const device = new ConsoleDevice({ ...quiet, ports: [{ console: true }, { name: 'org.novm.agent' }] });
  const features = BASE | VIRTIO_CONSOLE_F_MULTIPORT;
  const driver = fakeDriver(6, 16, features);
  device.activate(driver.context);
  const [rx0, , crx, ctx, rx1, tx1] = driver.queues;
  const controlBuffers: number[] = [];
  const postControlBuffers = (n: number) => {
    for (let i = 0; i < n; i++) controlBuffers.push(crx!.post([{ length: 64, writable: true }]).addresses[0]!);
    device.notify(2);
  };
  const readControl = () => crx!.takeUsed().map((u) => {
    const address = controlBuffers.shift()!;
    const bytes = driver.memory.read(address, u.length);
    const v = new DataView(bytes.buffer);
    return { id: v.getUint32(0, true), event: v.getUint16(4, true), value: v.getUint16(6, true), data: new TextDecoder().decode(bytes.subarray(8)), view: v };
  });
  postControlBuffers(8);
  ctx!.post([{ length: 8, writable: false, data: consoleControl(0, ControlEvent.DeviceReady, 1) }]);
  device.notify(3);
  // The console port is added first, the others once it is ready.
  assert.deepEqual(readControl().map((m) => [m.id, m.event]), [[0, ControlEvent.DeviceAdd]]);
  ctx!.post([{ length: 8, writable: false, data: consoleControl(0, ControlEvent.PortReady, 1) }]);
  ctx!.post([{ length: 8, writable: false, data: consoleControl(1, ControlEvent.PortReady, 1) }]);
  device.notify(3);
  const messages = readControl();
  assert.deepEqual(messages.map((m) => [m.id, m.event, m.value]), [
    [0, ControlEvent.ConsolePort, 1], [0, ControlEvent.PortOpen, 1], [1, ControlEvent.DeviceAdd, 0], [1, ControlEvent.PortName, 1], [1, ControlEvent.PortOpen, 1],
  ]);
  assert.equal(messages[3]!.data, 'org.novm.agent');
  // Host -> guest on port 1 waits until the guest opens the port and posts buffers.
  const agent = device.ports[1]!;
  const received: string[] = [];
  const opens: boolean[] = [];
  agent.onData = (d) => received.push(new TextDecoder().decode(d));
  agent.onOpen = (o) => opens.push(o);
  assert.equal(agent.write(new TextEncoder().encode('hello guest')), true);
  const rxBuffer = rx1!.post([{ length: 5, writable: true }]).addresses[0]!;
  const rxBuffer2 = rx1!.post([{ length: 64, writable: true }]).addresses[0]!;
  device.notify(4);
  const used = rx1!.takeUsed();
  assert.deepEqual(used.map((u) => u.length), [5, 6]);
  assert.equal(new TextDecoder().decode(driver.memory.read(rxBuffer, 5)) + new TextDecoder().decode(driver.memory.read(rxBuffer2, 6)), 'hello guest');
  // Guest -> host is delivered only while the guest has the port open.
  tx1!.post([{ length: 4, writable: false, data: new TextEncoder().encode('lost') }]);
  device.notify(5);
  assert.deepEqual(received, []);
  ctx!.post([{ length: 8, writable: false, data: consoleControl(1, ControlEvent.PortOpen, 1) }]);
  device.notify(3);
  tx1!.post([{ length: 3, writable: false, data: new TextEncoder().encode('hi!') }]);
  device.notify(5);
  assert.deepEqual(received, ['hi!']);
  assert.deepEqual(opens, [true]);
  // Resize goes out as a control message on the console port: cols then rows (§5.3.6.2, and
  // what Linux 6.1's drivers/char/virtio_console.c reads).
  device.resize(132, 43);
  const resize = readControl();
  assert.equal(resize[0]!.event, ControlEvent.Resize);
  assert.deepEqual([resize[0]!.view.getUint16(8, true), resize[0]!.view.getUint16(10, true)], [132, 43]);
  assert.equal(device.ports[0]!.announcedAsConsole, true);
  // Console port 0 receives host data without any open message (hvc is always open).
  device.ports[0]!.write(Uint8Array.of(0x41));
  const b = rx0!.post([{ length: 8, writable: true }]).addresses[0]!;
  device.notify(0);
  assert.equal(driver.memory.readU8(b), 0x41);
  // Backpressure: more than 1 MiB pending is refused.
  assert.equal(device.ports[0]!.write(new Uint8Array(2 << 20)), false);
  assert.equal(driver.resets.length, 0);
});

/** A fake FUSE engine: replies with the request's unique and length, sometimes later. */
class EchoHandler implements FuseRequestHandler {
  forgets = 0;
  handled = 0;
  handle(request: Uint8Array, done: (reply: Uint8Array | null) => void): void {
    this.handled++;
    const reply = new Uint8Array(24);
    const v = new DataView(reply.buffer);
    v.setUint32(0, 24, true);
    if (request.length >= 16) v.setBigUint64(8, new DataView(request.buffer, request.byteOffset).getBigUint64(8, true), true);
    v.setUint32(16, request.length, true);
    if (request.length % 2 === 0) done(reply);
    else setImmediate(() => done(reply));
  }
  forget(): void {
    this.forgets++;
  }
}

test('virtio-fs: requests reach the FUSE handler, replies land in the writable part (sync and async)', async () => {
  const handler = new EchoHandler();
  const device = new FsDevice(handler, { ...quiet, tag: 'myfs', requestQueues: 2 });
  const config = new Uint8Array(40);
  device.readConfig(0, config);
  assert.equal(new TextDecoder().decode(config.subarray(0, 4)), 'myfs');
  assert.equal(new DataView(config.buffer).getUint32(36, true), 2);
  const driver = fakeDriver(3, 16, BASE);
  device.activate(driver.context);
  const q = driver.queues[1]!;
  const req = (unique: number, length: number) => {
    const r = new Uint8Array(length);
    new DataView(r.buffer).setBigUint64(8, BigInt(unique), true);
    return q.post([{ length, writable: false, data: r }, { length: 64, writable: true }]);
  };
  const a = req(7, 40);
  const b = req(8, 41);
  device.notify(1);
  assert.deepEqual(q.takeUsed(), [{ id: a.head, length: 24 }]);
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(q.takeUsed(), [{ id: b.head, length: 24 }]);
  assert.equal(driver.memory.readU32LE(b.addresses[1]! + 16), 41);
  assert.equal(driver.memory.readU32LE(b.addresses[1]! + 8), 8);
  driver.queues[0]!.post([{ length: 48, writable: false }]);
  device.notify(0);
  assert.equal(handler.forgets, 1);
  // A late reply after reset is dropped without touching the rings.
  req(9, 41);
  device.notify(1);
  device.reset();
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(device.stats.late, 1);
  assert.equal(driver.resets.length, 0);
});

// ---------------------------------------------------------------------------------------------
// Hostile drivers.

interface Subject {
  readonly name: string;
  readonly queues: number;
  readonly features: bigint;
  make(): QueueDevice;
  /** After reset + a clean activation, one good request works. */
  works(device: QueueDevice, driver: FakeDriver): Promise<void> | void;
}

const subjects: Subject[] = [
  {
    name: 'rng', queues: 1, features: BASE,
    make: () => new RngDevice(quiet),
    works: (device, driver) => {
      driver.queues[0]!.post([{ length: 32, writable: true }]);
      device.notify(0);
      assert.equal(driver.queues[0]!.takeUsed()[0]?.length, 32);
    },
  },
  {
    name: 'blk', queues: 2, features: BASE | VIRTIO_BLK_F_MQ,
    make: () => new BlkDevice(new MemoryBlockBackend(1 << 16), { ...quiet, queues: 2 }),
    works: (device, driver) => {
      const p = driver.queues[1]!.post([{ length: 16, writable: false, data: header(0, 1n) }, { length: 512, writable: true }, { length: 1, writable: true }]);
      device.notify(1);
      assert.equal(driver.queues[1]!.takeUsed()[0]?.length, 513);
      assert.equal(driver.memory.readU8(p.addresses[2]!), VIRTIO_BLK_S_OK);
    },
  },
  {
    name: 'console', queues: 6, features: BASE | VIRTIO_CONSOLE_F_MULTIPORT,
    make: () => new ConsoleDevice({ ...quiet, ports: [{ console: true }, { name: 'x' }] }),
    works: (device, driver) => {
      driver.queues[2]!.post([{ length: 16, writable: true }]);
      driver.queues[3]!.post([{ length: 8, writable: false, data: consoleControl(0, ControlEvent.DeviceReady, 1) }]);
      device.notify(3);
      assert.equal(driver.queues[2]!.takeUsed()[0]?.length, 8);
    },
  },
  {
    name: 'fs', queues: 2, features: BASE,
    make: () => new FsDevice(new EchoHandler(), { ...quiet, tag: 't' }),
    works: (device, driver) => {
      driver.queues[1]!.post([{ length: 40, writable: false }, { length: 64, writable: true }]);
      device.notify(1);
      assert.equal(driver.queues[1]!.takeUsed()[0]?.length, 24);
    },
  },
];

const action = fc.oneof(
  fc.record({ kind: fc.constant('post' as const), queue: fc.nat(7), indirect: fc.boolean(), buffers: fc.array(fc.record({ length: fc.oneof(fc.nat(64), fc.nat(70000), fc.constant(0xffff_ffff)), writable: fc.boolean(), data: fc.option(fc.uint8Array({ maxLength: 64 }), { nil: undefined }) }), { minLength: 1, maxLength: 6 }) }),
  fc.record({ kind: fc.constant('scribble' as const), queue: fc.nat(7), offset: fc.nat(0x3000), bytes: fc.uint8Array({ minLength: 1, maxLength: 32 }) }),
  fc.record({ kind: fc.constant('notify' as const), queue: fc.integer({ min: -2, max: 10 }) }),
  fc.record({ kind: fc.constant('config' as const), offset: fc.integer({ min: -4, max: 80 }), length: fc.nat(16), write: fc.boolean() }),
  fc.record({ kind: fc.constant('reset' as const) }),
);

for (const subject of subjects) {
  test(`hostile driver vs ${subject.name}: no exception escapes, and a reset brings it back`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(action, { maxLength: 30 }), async (actions) => {
        const device = subject.make();
        let driver = fakeDriver(subject.queues, 8, subject.features, 1 << 20);
        device.activate(driver.context);
        for (const a of actions) {
          switch (a.kind) {
            case 'post': {
              const q = driver.queues[a.queue % subject.queues]!;
              // Lengths beyond the data area are clamped by the fake allocator's memory: make
              // them lie instead by writing the length after posting.
              const sane = a.buffers.map((b) => ({ length: Math.min(b.length, 4096), writable: b.writable, ...(b.data && !b.writable ? { data: b.data.slice(0, Math.min(b.length, 4096)) } : {}) }));
              const posted = q.post(sane, { indirect: a.indirect });
              if (a.buffers.some((b) => b.length > 4096) && !a.indirect) driver.memory.writeU32LE(q.config.descAddr + 16 * posted.head + 8, a.buffers[0]!.length >>> 0);
              break;
            }
            case 'scribble': {
              const q = driver.queues[a.queue % subject.queues]!;
              const at = q.config.descAddr + a.offset;
              if (driver.memory.isValidRange(at, a.bytes.length)) driver.memory.write(at, a.bytes);
              break;
            }
            case 'notify':
              device.notify(a.queue);
              break;
            case 'config': {
              const data = new Uint8Array(a.length);
              if (a.write) device.writeConfig(a.offset, data);
              else device.readConfig(a.offset, data);
              break;
            }
            case 'reset':
              device.reset();
              driver = fakeDriver(subject.queues, 8, subject.features, 1 << 20);
              device.activate(driver.context);
              break;
          }
          for (const reason of driver.resets) assert.equal(typeof reason, 'string');
        }
        await new Promise((resolve) => setImmediate(resolve));
        device.reset();
        const clean = fakeDriver(subject.queues, 8, subject.features, 1 << 20);
        device.activate(clean.context);
        await subject.works(device, clean);
        assert.deepEqual(clean.resets, []);
      }),
      { numRuns: 150 },
    );
  });
}

test('a queue that does not fit in guest memory puts the device in NEEDS_RESET once', () => {
  const device = new RngDevice(quiet);
  const driver = fakeDriver(1, 16, BASE);
  const context = { ...driver.context, queues: [{ size: 16, descAddr: 0xfffff000, driverAddr: 0, deviceAddr: 0x1000 }] };
  device.activate(context);
  device.notify(0);
  device.notify(0);
  assert.equal(driver.resets.length, 1);
  assert.match(driver.resets[0]!, /not guest RAM/);
  assert.equal(device.needsReset, true);
});

test('virtio-fs quiesce (vhost-user GET_VRING_BASE): in-flight replies land before the queue reports its position, new kicks are ignored', async () => {
  const handler = new EchoHandler();
  const device = new FsDevice(handler, { ...quiet, tag: 'q' });
  const driver = fakeDriver(2, 16, BASE);
  device.activate(driver.context);
  const q = driver.queues[1]!;
  q.post([{ length: 41, writable: false }, { length: 64, writable: true }]); // odd: replied later
  device.notify(1);
  assert.deepEqual(q.takeUsed(), []);
  const idle = device.quiesce(1);
  assert.ok(idle !== undefined, 'a request is in flight');
  q.post([{ length: 40, writable: false }, { length: 64, writable: true }]);
  device.notify(1);
  assert.equal(handler.handled, 1, 'kicks on a stopping queue are ignored');
  await idle;
  assert.equal(q.takeUsed().length, 1, 'the in-flight reply reached the used ring first');
  assert.deepEqual(device.queuePosition(1), { nextAvail: 1, nextUsed: 1 });
  assert.equal(device.quiesce(1), undefined, 'nothing in flight any more');
});

test('virtio-fs: a request larger than the engine accepts gets a FUSE error reply (E2BIG) with its unique', () => {
  const handler = new EchoHandler();
  const device = new FsDevice(handler, { ...quiet, tag: 'big', maxRequestBytes: 4096 });
  const driver = fakeDriver(2, 16, BASE);
  device.activate(driver.context);
  const request = new Uint8Array(8192);
  new DataView(request.buffer).setBigUint64(8, 77n, true);
  const posted = driver.queues[1]!.post([{ length: 8192, writable: false, data: request }, { length: 64, writable: true }]);
  device.notify(1);
  assert.deepEqual(driver.queues[1]!.takeUsed(), [{ id: posted.head, length: 16 }]);
  const reply = new DataView(driver.memory.read(posted.addresses[1]!, 16).buffer);
  assert.equal(reply.getInt32(4, true), -7);
  assert.equal(reply.getBigUint64(8, true), 77n);
  assert.equal(handler.handled, 0);
});
