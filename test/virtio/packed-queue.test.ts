// The packed virtqueue (virtio 1.2 §2.8) against a fake packed driver: chains round-trip with
// wrap-around and indirect tables, event suppression works, every descriptor rule has a
// negative test, random rings only yield in-RAM chains or a QueueViolation, and a device runs
// over packed rings unchanged.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { MemoryBlockBackend } from '../../src/virtio/devices/blk/block-backend.js';
import { BlkDevice, VIRTIO_BLK_S_OK } from '../../src/virtio/devices/blk/blk-device.js';
import { DescriptorChain } from '../../src/virtio/queue/descriptor-chain.js';
import { QueueViolation, type QueueViolationCode } from '../../src/virtio/queue/errors.js';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_PACKED, VIRTIO_F_VERSION_1 } from '../../src/virtio/queue/features.js';
import { PackedQueue } from '../../src/virtio/queue/packed-queue.js';
import { maskSomeDescriptors } from './fake-driver.js';
import { FakePackedDriver } from './fake-packed-driver.js';

const ALL = VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC | VIRTIO_F_EVENT_IDX | VIRTIO_F_RING_PACKED;
const NEXT = 1;
const WRITE = 2;
const INDIRECT = 4;
const AVAIL = 1 << 7;
const USED = 1 << 15;

test('packed: chains of every shape round-trip across many wraps, with indirect tables', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ readable: fc.nat(3), writable: fc.nat(3), indirect: fc.boolean() }), { minLength: 1, maxLength: 60 }),
      fc.integer({ min: 4, max: 16 }),
      (requests, size) => {
        const driver = new FakePackedDriver(size);
        const queue = new PackedQueue(driver.config, driver.memory, ALL);
        const chain = new DescriptorChain(size);
        for (const r of requests) {
          const buffers = [...Array.from({ length: r.readable }, () => ({ length: 100, writable: false })), ...Array.from({ length: r.writable }, () => ({ length: 200, writable: true }))];
          if (buffers.length === 0 || (!r.indirect && buffers.length > size)) continue;
          const posted = driver.post(buffers, r.indirect);
          driver.chainSlots.push(r.indirect ? 1 : buffers.length);
          assert.equal(queue.pop(chain), true);
          assert.equal(chain.count, buffers.length);
          assert.equal(chain.readableCount, r.readable);
          assert.equal(chain.writableBytes, 200 * r.writable);
          assert.deepEqual([...chain.addresses.subarray(0, chain.count)], posted.addresses);
          queue.pushUsed(chain.head, 7);
          assert.deepEqual(driver.takeUsed(), [[posted.id, 7]]);
          assert.equal(queue.pop(chain), false);
        }
      },
    ),
    { numRuns: 200 },
  );
});

test('packed: undoPop puts chains back, several in a row', () => {
  const driver = new FakePackedDriver(8);
  const queue = new PackedQueue(driver.config, driver.memory, ALL);
  const chain = new DescriptorChain(8);
  const a = driver.post([{ length: 8, writable: true }, { length: 8, writable: true }]);
  const b = driver.post([{ length: 8, writable: true }]);
  assert.ok(queue.pop(chain) && queue.pop(chain));
  queue.undoPop();
  queue.undoPop();
  assert.ok(queue.pop(chain));
  assert.equal(chain.head & 0xffff, a.id);
  assert.ok(queue.pop(chain));
  assert.equal(chain.head & 0xffff, b.id);
});

test('packed event suppression: DISABLE, ENABLE and DESC (EVENT_IDX) on both sides', () => {
  const driver = new FakePackedDriver(8);
  const queue = new PackedQueue(driver.config, driver.memory, ALL);
  const chain = new DescriptorChain(8);
  const serve = () => {
    driver.post([{ length: 4, writable: true }]);
    assert.ok(queue.pop(chain));
    queue.pushUsed(chain.head, 4);
  };
  driver.memory.writeU16LE(2, 1); // driver: DISABLE
  serve();
  assert.equal(queue.needsNotification(), false);
  driver.memory.writeU16LE(2, 0); // ENABLE
  serve();
  assert.equal(queue.needsNotification(), true);
  driver.memory.writeU16LE(0, 0x8000 | 4); // DESC: notify when used index passes 4 (wrap 1)
  driver.memory.writeU16LE(2, 2);
  serve(); // used idx 3
  assert.equal(queue.needsNotification(), false);
  serve(); // used idx 4
  assert.equal(queue.needsNotification(), false);
  serve(); // used idx 5: passed 4
  assert.equal(queue.needsNotification(), true);
  queue.disableNotifications();
  assert.equal(driver.memory.readU16LE(0x12), 1);
  assert.equal(queue.enableNotifications(), false);
  assert.equal(driver.memory.readU16LE(0x12), 2);
  assert.equal(driver.memory.readU16LE(0x10), 0x8000 | 5, 'device event: next avail position with wrap');
});

function violation(code: QueueViolationCode) {
  return (error: unknown) => error instanceof QueueViolation && error.code === code;
}

test('packed negative tests: unavailable chain member, INDIRECT rules, out-of-RAM buffers, order, bad rings', () => {
  const setup = (features = ALL) => {
    const driver = new FakePackedDriver(8);
    return { driver, queue: new PackedQueue(driver.config, driver.memory, features), chain: new DescriptorChain(8) };
  };
  const desc = (m: GuestMemory, slot: number, addr: number, len: number, flags: number) => {
    m.writeU64LE(0x1000 + 16 * slot, BigInt(addr));
    m.writeU32LE(0x1000 + 16 * slot + 8, len);
    m.writeU16LE(0x1000 + 16 * slot + 14, flags);
  };
  let s = setup();
  desc(s.driver.memory, 1, 0x20000, 16, AVAIL);
  desc(s.driver.memory, 0, 0x20000, 16, AVAIL | NEXT);
  s.driver.memory.writeU16LE(0x1000 + 16 + 14, USED); // second member not available
  assert.throws(() => s.queue.pop(s.chain), violation('descriptor-index'));
  s = setup(VIRTIO_F_VERSION_1 | VIRTIO_F_RING_PACKED);
  desc(s.driver.memory, 0, 0x20000, 32, AVAIL | INDIRECT);
  assert.throws(() => s.queue.pop(s.chain), violation('indirect-not-negotiated'));
  s = setup();
  desc(s.driver.memory, 0, 0x20000, 32, AVAIL | INDIRECT | NEXT);
  assert.throws(() => s.queue.pop(s.chain), violation('indirect-with-next'));
  s = setup();
  desc(s.driver.memory, 0, 0x20000, 24, AVAIL | INDIRECT);
  assert.throws(() => s.queue.pop(s.chain), violation('indirect-table-size'));
  s = setup();
  s.driver.memory.writeU16LE(0x20000 + 14, INDIRECT);
  desc(s.driver.memory, 0, 0x20000, 16, AVAIL | INDIRECT);
  assert.throws(() => s.queue.pop(s.chain), violation('nested-indirect'));
  s = setup();
  desc(s.driver.memory, 0, 0xfff00, 0x1000, AVAIL);
  assert.throws(() => s.queue.pop(s.chain), violation('buffer-out-of-memory'));
  s = setup();
  desc(s.driver.memory, 1, 0x20000, 16, AVAIL);
  desc(s.driver.memory, 0, 0x20000, 16, AVAIL | NEXT | WRITE);
  assert.throws(() => s.queue.pop(s.chain), violation('readable-after-writable'));
  s = setup();
  // A chain that never ends runs into its own head after one lap, which is then no longer
  // available under the flipped wrap counter: caught before the length limit.
  for (let i = 0; i < 8; i++) desc(s.driver.memory, i, 0x20000, 16, AVAIL | NEXT);
  assert.throws(() => s.queue.pop(s.chain), violation('descriptor-index'));
  const memory = GuestMemory.anonymous([{ start: 0, size: 0x2000 }]);
  assert.throws(() => new PackedQueue({ size: 8, descAddr: 0x1008, driverAddr: 0, deviceAddr: 4 }, memory, ALL), violation('ring-misaligned'));
  assert.throws(() => new PackedQueue({ size: 1024, descAddr: 0x1000, driverAddr: 0, deviceAddr: 4 }, memory, ALL), violation('ring-out-of-memory'));
});

test('packed hostile rings: random descriptor rings yield in-RAM chains or a QueueViolation, never anything else', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 16 * 16, maxLength: 16 * 16 }), fc.uint8Array({ minLength: 256, maxLength: 256 }), fc.nat(15), fc.boolean(), (ring, table, start, wrap) => {
      const memory = GuestMemory.anonymous([{ start: 0, size: 0x10000 }]);
      maskSomeDescriptors(ring, 16);
      memory.write(0x1000, ring);
      memory.write(0x8000, table);
      const queue = new PackedQueue({ size: 16, descAddr: 0x1000, driverAddr: 0, deviceAddr: 4, nextAvail: start | (wrap ? 0x8000 : 0), nextUsed: start | (wrap ? 0x8000 : 0) }, memory, ALL);
      const chain = new DescriptorChain(16);
      for (let n = 0; n < 40; n++) {
        let got: boolean;
        try {
          got = queue.pop(chain);
        } catch (error) {
          assert.ok(error instanceof QueueViolation, String(error));
          return;
        }
        if (!got) return;
        for (let i = 0; i < chain.count; i++) assert.ok(memory.isValidRange(chain.addresses[i]!, chain.lengths[i]!));
        queue.pushUsed(chain.head, 0);
      }
    }),
    { numRuns: 1000 },
  );
});

test('a device runs over packed rings unchanged (virtio-blk read)', () => {
  const disk = new MemoryBlockBackend(1 << 16);
  disk.bytes.fill(0x3c);
  const device = new BlkDevice(disk, { log: () => {}, packedRing: true });
  assert.ok((device.deviceFeatures & VIRTIO_F_RING_PACKED) !== 0n);
  const driver = new FakePackedDriver(16);
  const resets: string[] = [];
  device.activate({ memory: driver.memory, features: ALL, queues: [driver.config], notifyQueue: () => {}, notifyConfig: () => {}, needsReset: (r) => resets.push(r) });
  const header = driver.allocate(16);
  const posted = driver.post([{ length: 16, writable: false }, { length: 512, writable: true }, { length: 1, writable: true }]);
  driver.memory.write(posted.addresses[0]!, new Uint8Array(16)); // IN, sector 0
  void header;
  driver.chainSlots.push(3);
  device.notify(0);
  assert.deepEqual(driver.takeUsed(), [[posted.id, 513]]);
  assert.equal(driver.memory.readU8(posted.addresses[2]!), VIRTIO_BLK_S_OK);
  assert.ok(driver.memory.read(posted.addresses[1]!, 512).every((b) => b === 0x3c));
  assert.deepEqual(resets, []);
});

test('hostile packed driver vs blk and fs devices: no exception escapes, and a reset brings them back', async () => {
  const { FsDevice } = await import('../../src/virtio/devices/fs/fs-device.js');
  // Each device, and the good request it must serve after the hostile run: [queue, reply length].
  const makers: Array<[() => BlkDevice | InstanceType<typeof FsDevice>, number, number]> = [
    [() => new BlkDevice(new MemoryBlockBackend(1 << 16), { log: () => {}, packedRing: true }), 0, 513],
    [() => new FsDevice({ handle: (_r, done) => setImmediate(() => done(new Uint8Array(16))), forget: () => {} }, { log: () => {}, packedRing: true, tag: 'p' }), 1, 16],
  ];
  for (const [make, goodQueue, goodLength] of makers) {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(
          fc.record({ kind: fc.constant('post' as const), count: fc.integer({ min: 1, max: 4 }), writable: fc.boolean(), indirect: fc.boolean() }),
          fc.record({ kind: fc.constant('scribble' as const), offset: fc.nat(16 * 16 - 1), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
          fc.record({ kind: fc.constant('notify' as const), queue: fc.integer({ min: -1, max: 3 }) }),
        ), { maxLength: 25 }),
        async (actions) => {
          const device = make();
          const driver = new FakePackedDriver(16);
          const context = (d: FakePackedDriver, resets: string[]) => ({ memory: d.memory, features: ALL, queues: [d.config, { ...d.config, descAddr: 0x2000, driverAddr: 0x20, deviceAddr: 0x30 }], notifyQueue: () => {}, notifyConfig: () => {}, needsReset: (r: string) => resets.push(r) });
          device.activate(context(driver, []));
          for (const a of actions) {
            if (a.kind === 'post') driver.post(Array.from({ length: a.count }, (_, i) => ({ length: 64, writable: a.writable && i > 0 })), a.indirect);
            else if (a.kind === 'scribble') driver.memory.write(0x1000 + a.offset, a.bytes.subarray(0, Math.min(a.bytes.length, 16 * 16 - a.offset)));
            else device.notify(a.queue);
          }
          await new Promise((resolve) => setImmediate(resolve));
          device.reset();
          const clean = new FakePackedDriver(16);
          const resets: string[] = [];
          device.activate(context(clean, resets));
          // Queue 0 of the clean driver is at 0x1000; requests go there (fs: pretend it is queue 1).
          const cfg = context(clean, resets);
          if (goodQueue === 1) device.activate({ ...cfg, queues: [{ ...clean.config, descAddr: 0x2000, driverAddr: 0x20, deviceAddr: 0x30 }, clean.config] });
          const posted = clean.post([{ length: 16, writable: false }, { length: 512, writable: true }, { length: 1, writable: true }]);
          clean.memory.write(posted.addresses[0]!, new Uint8Array(16));
          clean.chainSlots.push(3);
          device.notify(goodQueue);
          await new Promise((resolve) => setImmediate(resolve));
          assert.deepEqual(clean.takeUsed(), [[posted.id, goodLength]]);
          assert.deepEqual(resets, []);
          assert.equal(device.needsReset, false);
        },
      ),
      { numRuns: 100 },
    );
  }
});
