// The vhost-user back end against a fake front end on a socketpair: a full bring-up that moves
// a request through a real memfd-shared ring with eventfd kicks and calls, and a hostile front
// end (lying sizes, unknown requests, missing or extra descriptors, random message sequences)
// that can only ever get a NACK or a closed connection, never a crash or a leaked descriptor.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { createMemfdMemory, releaseRegions } from '../../src/memory/memfd-memory.js';
import type { GuestAddress } from '../../src/memory/address.js';
import * as libc from '../../src/native/libc.js';
import { SOCK_CLOEXEC, SOCK_NONBLOCK, socketPair } from '../../src/native/socket-calls.js';
import { MemoryBlockBackend } from '../../src/virtio/devices/blk/block-backend.js';
import { BlkDevice } from '../../src/virtio/devices/blk/blk-device.js';
import type { QueueDevice } from '../../src/virtio/devices/queue-device.js';
import { RngDevice } from '../../src/virtio/devices/rng/rng-device.js';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_VERSION_1 } from '../../src/virtio/queue/features.js';
import { VhostUserBackend } from '../../src/vhost-user/backend.js';
import { VhostUserConnection } from '../../src/vhost-user/connection.js';
import { FdPoller } from '../../src/vhost-user/fd-poller.js';
import { FLAG_REPLY, FLAG_VERSION, PROTOCOL_F_CONFIG, PROTOCOL_F_CONFIGURE_MEM_SLOTS, PROTOCOL_F_MQ, PROTOCOL_F_REPLY_ACK, Request, VHOST_USER_F_PROTOCOL_FEATURES } from '../../src/vhost-user/protocol.js';
import { FakeQueue } from '../virtio/fake-driver.js';
import { FakeFrontEnd, concat, fdTargets, openFds, u32s, u64 } from './fake-front-end.js';

const UVA_BASE = 0x7f12_0000_0000n;
const MEMORY = 4 << 20;

interface Session {
  readonly front: FakeFrontEnd;
  readonly connection: VhostUserConnection;
  readonly logs: string[];
  close(): Promise<void>;
}

function openSession(device: QueueDevice, poller: FdPoller): Session {
  const [backendFd, frontFd] = socketPair(SOCK_NONBLOCK | SOCK_CLOEXEC);
  const logs: string[] = [];
  const connection: VhostUserConnection = new VhostUserConnection(backendFd, poller, (m) => backend.handle(m));
  const backend = new VhostUserBackend(device, connection, poller, (line) => logs.push(line));
  return {
    front: new FakeFrontEnd(frontFd),
    connection,
    logs,
    close: async () => {
      libc.close(frontFd);
      await connection.closedReason;
    },
  };
}

// The first Worker and the first koffi calls open descriptors of their own: warm them up so
// descriptor counts below measure only what the back end does.
{
  const warm = new FdPoller();
  await warm.ready;
  await warm.stop();
}

async function ack(front: FakeFrontEnd, request: number): Promise<bigint | undefined> {
  const reply = await front.receive();
  if (reply === undefined) return undefined;
  assert.equal(reply.request, request);
  assert.equal(reply.flags, FLAG_VERSION | FLAG_REPLY);
  return reply.payload.getBigUint64(0, true);
}

function memTable(fd: number, regions: ReadonlyArray<{ gpa: bigint; size: bigint; uva: bigint; offset: bigint }>): { payload: Uint8Array; fds: number[] } {
  const parts = [u32s(regions.length, 0)];
  for (const r of regions) parts.push(u64(r.gpa), u64(r.size), u64(r.uva), u64(r.offset));
  return { payload: concat(...parts), fds: regions.map(() => fd) };
}

test('bring-up: features, memory table, vring setup, kick -> device -> call, GET_VRING_BASE, config', async () => {
  const fdsAtStart = openFds();
  const poller = new FdPoller();
  const { memory, regions } = createMemfdMemory([{ start: 0 as GuestAddress, size: MEMORY }]);
  const kick = libc.eventfd(0, libc.EFD_NONBLOCK | libc.EFD_CLOEXEC);
  const call = libc.eventfd(0, libc.EFD_NONBLOCK | libc.EFD_CLOEXEC);
  try {
    const device = new RngDevice({ log: () => {} });
    const s = openSession(device, poller);
    const f = s.front;
    f.send(Request.GetFeatures, new Uint8Array());
    const features = await ack(f, Request.GetFeatures);
    assert.ok(features !== undefined && (features & VHOST_USER_F_PROTOCOL_FEATURES) !== 0n && (features & VIRTIO_F_VERSION_1) !== 0n);
    f.send(Request.SetFeatures, u64(VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX | VHOST_USER_F_PROTOCOL_FEATURES));
    f.send(Request.GetProtocolFeatures, new Uint8Array());
    const protocol = await ack(f, Request.GetProtocolFeatures);
    assert.equal(protocol! & (PROTOCOL_F_MQ | PROTOCOL_F_REPLY_ACK | PROTOCOL_F_CONFIG), PROTOCOL_F_MQ | PROTOCOL_F_REPLY_ACK | PROTOCOL_F_CONFIG);
    f.send(Request.SetProtocolFeatures, u64(PROTOCOL_F_REPLY_ACK | PROTOCOL_F_MQ | PROTOCOL_F_CONFIG));
    f.send(Request.SetOwner, new Uint8Array(), [], { needReply: true });
    assert.equal(await ack(f, Request.SetOwner), 0n);
    f.send(Request.GetQueueNum, new Uint8Array());
    assert.equal(await ack(f, Request.GetQueueNum), 1n);
    const table = memTable(regions[0]!.fd, [{ gpa: 0n, size: BigInt(MEMORY), uva: UVA_BASE, offset: 0n }]);
    f.send(Request.SetMemTable, table.payload, table.fds, { needReply: true });
    assert.equal(await ack(f, Request.SetMemTable), 0n);
    // The driver's rings, laid out in the shared memfd by the fake driver.
    const q = new FakeQueue(memory, 16, 0, 0x10_0000, 0x20_0000);
    const uva = (gpa: number) => UVA_BASE + BigInt(gpa);
    f.send(Request.SetVringNum, u32s(0, 16));
    f.send(Request.SetVringBase, u32s(0, 0));
    f.send(Request.SetVringAddr, concat(u32s(0, 0), u64(uva(q.config.descAddr)), u64(uva(q.config.deviceAddr)), u64(uva(q.config.driverAddr)), u64(0n)));
    f.send(Request.SetVringCall, u64(0n), [call]);
    f.send(Request.SetVringKick, u64(0n), [kick]);
    // A request posted before the ring is enabled is served once it is.
    const early = q.post([{ length: 32, writable: true }]);
    f.send(Request.SetVringEnable, u32s(0, 1), [], { needReply: true });
    assert.equal(await ack(f, Request.SetVringEnable), 0n);
    const waitCall = async () => {
      const counter = new Uint8Array(8);
      for (let i = 0; i < 500; i++) {
        if (libc.read(call, counter, 8) === 8) return true;
        await sleep(2);
      }
      return false;
    };
    assert.ok(await waitCall(), 'call eventfd signalled');
    assert.deepEqual(q.takeUsed(), [{ id: early.head, length: 32 }]);
    // EVENT_IDX: the driver asks for an interrupt when the next entry (index 1) is used.
    q.setUsedEvent(1);
    const later = q.post([{ length: 100, writable: true }]);
    libc.write(kick, u64(1n), 8);
    assert.ok(await waitCall(), 'call after kick');
    assert.deepEqual(q.takeUsed(), [{ id: later.head, length: 100 }]);
    // Stopping the ring reports where the device stands.
    f.send(Request.GetVringBase, u32s(0, 0));
    const base = await f.receive();
    assert.equal(base?.payload.getUint32(4, true), 2);
    assert.equal(device.isActive, false, 'no ring running: the device is reset');
    assert.deepEqual(s.logs.filter((l) => !l.includes('sealed')), []);
    await s.close();
  } finally {
    libc.close(kick);
    libc.close(call);
    releaseRegions(regions);
    await poller.stop();
  }
  assert.equal(openFds(), fdsAtStart, 'every received descriptor was closed');
});

test('GET_CONFIG returns the device configuration; bad ranges close the connection', async () => {
  const poller = new FdPoller();
  try {
    const device = new BlkDevice(new MemoryBlockBackend(1 << 20), { log: () => {}, queues: 3 });
    const s = openSession(device, poller);
    s.front.send(Request.SetProtocolFeatures, u64(PROTOCOL_F_CONFIG | PROTOCOL_F_REPLY_ACK));
    s.front.send(Request.GetConfig, concat(u32s(0, 60, 0), new Uint8Array(60)));
    const reply = await s.front.receive();
    assert.equal(reply?.request, Request.GetConfig);
    assert.equal(reply!.payload.getBigUint64(12, true), 2048n, 'capacity in sectors');
    assert.equal(reply!.payload.getUint16(12 + 34, true), 3, 'num_queues');
    s.front.send(Request.GetConfig, concat(u32s(250, 60, 0), new Uint8Array(60)));
    assert.ok(await s.front.closedByPeer());
    assert.equal(s.logs.length, 1);
    await s.close();
  } finally {
    await poller.stop();
  }
});

test('hostile front end: each malformed message costs one log line and the connection, never the process', async () => {
  const poller = new FdPoller();
  await poller.ready;
  const efd = libc.eventfd(0, libc.EFD_CLOEXEC);
  const { regions } = createMemfdMemory([{ start: 0 as GuestAddress, size: 1 << 20 }]);
  try {
    const cases: Array<{ name: string; run: (f: FakeFrontEnd) => void }> = [
      { name: 'payload size beyond the limit', run: (f) => f.send(Request.GetFeatures, new Uint8Array(), [], { size: 1 << 20 }) },
      { name: 'wrong version bits', run: (f) => f.send(Request.GetFeatures, new Uint8Array(), [], { flags: 0x2 }) },
      { name: 'short payload', run: (f) => f.send(Request.SetFeatures, new Uint8Array(3)) },
      { name: 'kick without descriptor', run: (f) => f.send(Request.SetVringKick, u64(0n)) },
      { name: 'queue index out of range', run: (f) => f.send(Request.SetVringNum, u32s(7, 16)) },
      { name: 'too many regions', run: (f) => f.send(Request.SetMemTable, concat(u32s(9, 0), new Uint8Array(9 * 32))) },
      { name: 'too many descriptors', run: (f) => f.send(Request.GetFeatures, new Uint8Array(), new Array<number>(20).fill(efd)) },
    ];
    for (const c of cases) {
      const fdsBefore = openFds();
      const s = openSession(new RngDevice({ log: () => {} }), poller);
      c.run(s.front);
      assert.ok(await s.front.closedByPeer(), `${c.name}: connection closed`);
      assert.equal(s.logs.length, 1, `${c.name}: ${s.logs.join(' | ')}`);
      await s.close();
      assert.equal(openFds(), fdsBefore, `${c.name}: no descriptor leaked`);
    }
    // Refusals that keep the connection: unknown request, region beyond its file, fd count mismatch.
    const s = openSession(new RngDevice({ log: () => {} }), poller);
    s.front.send(Request.SetProtocolFeatures, u64(PROTOCOL_F_REPLY_ACK));
    s.front.send(200, new Uint8Array(4), [], { needReply: true });
    assert.equal(await ack(s.front, 200), 1n);
    const beyond = memTable(regions[0]!.fd, [{ gpa: 0n, size: 1n << 30n, uva: UVA_BASE, offset: 0n }]);
    s.front.send(Request.SetMemTable, beyond.payload, beyond.fds, { needReply: true });
    assert.equal(await ack(s.front, Request.SetMemTable), 1n);
    const mismatch = memTable(regions[0]!.fd, [{ gpa: 0n, size: 4096n, uva: UVA_BASE, offset: 0n }]);
    s.front.send(Request.SetMemTable, mismatch.payload, [], { needReply: true });
    assert.equal(await ack(s.front, Request.SetMemTable), 1n);
    s.front.send(Request.SetVringNum, u32s(0, 1000), [], { needReply: true });
    assert.equal(await ack(s.front, Request.SetVringNum), 1n);
    s.front.send(Request.GetQueueNum, new Uint8Array());
    assert.equal(await ack(s.front, Request.GetQueueNum), 1n, 'still talking');
    await s.close();
  } finally {
    libc.close(efd);
    releaseRegions(regions);
    await poller.stop();
  }
});

test('fuzzed message sequences: the back end answers, refuses or disconnects, and leaks nothing', async () => {
  const poller = new FdPoller();
  const { regions } = createMemfdMemory([{ start: 0 as GuestAddress, size: 1 << 20 }]);
  await poller.ready;
  const message = fc.record({
    request: fc.oneof(fc.integer({ min: 0, max: 45 }), fc.constantFrom(5, 8, 9, 10, 11, 12, 13, 18, 24, 25)),
    payload: fc.uint8Array({ maxLength: 80 }),
    withFd: fc.constantFrom('none', 'eventfd', 'memfd'),
    needReply: fc.boolean(),
  });
  try {
    const fdsBefore = fdTargets();
    await fc.assert(
      fc.asyncProperty(fc.array(message, { minLength: 1, maxLength: 12 }), async (messages) => {
        const s = openSession(new BlkDevice(new MemoryBlockBackend(1 << 16), { log: () => {} }), poller);
        s.front.send(Request.SetProtocolFeatures, u64(PROTOCOL_F_REPLY_ACK | PROTOCOL_F_CONFIG));
        for (const m of messages) {
          if (s.connection.isClosed) break;
          const fds: number[] = [];
          if (m.withFd === 'eventfd') fds.push(libc.eventfd(0, libc.EFD_CLOEXEC));
          if (m.withFd === 'memfd') fds.push(regions[0]!.fd);
          try {
            s.front.send(m.request, m.payload, fds, { needReply: m.needReply });
          } catch {
            // The back end already closed its end.
          } finally {
            if (m.withFd === 'eventfd') libc.close(fds[0]!);
          }
          await sleep(0);
        }
        await sleep(5);
        if (!s.connection.isClosed) {
          s.front.send(Request.GetQueueNum, new Uint8Array());
          // Replies to earlier GET_* requests may be queued first.
          let answered = false;
          for (let i = 0; i < 20 && !answered; i++) {
            const reply = await s.front.receive(500);
            if (reply === undefined) break;
            answered = reply.request === Request.GetQueueNum;
          }
          assert.ok(answered || s.connection.isClosed, 'the back end still answers');
        }
        await s.close();
      }),
      { numRuns: 60 },
    );
    const after = fdTargets();
    assert.deepEqual(after.filter((t) => !fdsBefore.includes(t)), [], 'descriptors opened and never closed');
  } finally {
    releaseRegions(regions);
    await poller.stop();
  }
});

test('CONFIGURE_MEM_SLOTS: ADD_MEM_REG maps regions one by one, REM_MEM_REG unmaps them after the device moved off', async () => {
  const poller = new FdPoller();
  const { memory, regions } = createMemfdMemory([{ start: 0 as GuestAddress, size: MEMORY }]);
  const kick = libc.eventfd(0, libc.EFD_NONBLOCK | libc.EFD_CLOEXEC);
  const call = libc.eventfd(0, libc.EFD_NONBLOCK | libc.EFD_CLOEXEC);
  try {
    const device = new RngDevice({ log: () => {} });
    const s = openSession(device, poller);
    const f = s.front;
    f.send(Request.SetFeatures, u64(VIRTIO_F_VERSION_1));
    f.send(Request.SetProtocolFeatures, u64(PROTOCOL_F_REPLY_ACK | PROTOCOL_F_CONFIGURE_MEM_SLOTS));
    f.send(Request.GetMaxMemSlots, new Uint8Array());
    assert.ok((await ack(f, Request.GetMaxMemSlots))! >= 8n);
    // Two halves of the memfd as two slots.
    const half = MEMORY / 2;
    const region = (gpa: number) => concat(u64(0n), u64(BigInt(gpa)), u64(BigInt(half)), u64(UVA_BASE + BigInt(gpa)), u64(BigInt(gpa)));
    f.send(Request.AddMemReg, region(0), [regions[0]!.fd], { needReply: true });
    assert.equal(await ack(f, Request.AddMemReg), 0n);
    f.send(Request.AddMemReg, region(half), [regions[0]!.fd], { needReply: true });
    assert.equal(await ack(f, Request.AddMemReg), 0n);
    f.send(Request.AddMemReg, region(half), [regions[0]!.fd], { needReply: true });
    assert.equal(await ack(f, Request.AddMemReg), 1n, 'an overlapping region is refused');
    // Rings in the first half, buffers in the second.
    const q = new FakeQueue(memory, 16, 0, half, MEMORY);
    const uva = (gpa: number) => UVA_BASE + BigInt(gpa);
    f.send(Request.SetVringNum, u32s(0, 16));
    f.send(Request.SetVringAddr, concat(u32s(0, 0), u64(uva(q.config.descAddr)), u64(uva(q.config.deviceAddr)), u64(uva(q.config.driverAddr)), u64(0n)));
    f.send(Request.SetVringCall, u64(0n), [call]);
    const posted = q.post([{ length: 64, writable: true }]);
    f.send(Request.SetVringKick, u64(0n), [kick], { needReply: true });
    assert.equal(await ack(f, Request.SetVringKick), 0n);
    assert.deepEqual(q.takeUsed(), [{ id: posted.head, length: 64 }]);
    // Removing the half that holds the buffers: the next request's buffer is outside guest
    // RAM as the back end now sees it, so the device reports a broken driver instead of
    // touching unmapped memory.
    f.send(Request.RemMemReg, region(half), [], { needReply: true });
    assert.equal(await ack(f, Request.RemMemReg), 0n);
    q.post([{ length: 64, writable: true }]);
    libc.write(kick, u64(1n), 8);
    for (let i = 0; i < 200 && !device.needsReset; i++) await sleep(2);
    assert.equal(device.needsReset, true);
    f.send(Request.RemMemReg, region(half), [], { needReply: true });
    assert.equal(await ack(f, Request.RemMemReg), 1n, 'removing an unknown region is refused');
    await s.close();
  } finally {
    libc.close(kick);
    libc.close(call);
    releaseRegions(regions);
    await poller.stop();
  }
});
