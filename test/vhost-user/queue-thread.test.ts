// The thread-hosted virtio-fs device (QueueThreadDevice + queue-thread-worker + hosted-fs)
// behind the real VhostUserBackend, driven by the fake front end over a socketpair with
// memfd-shared rings and real kick/call/err eventfds: FUSE requests are served from the queue
// thread (its own poll on the kick, its own call), GET_VRING_BASE and resets that arrive while
// requests sit in the ring lose or repeat nothing, a hostile ring costs NEEDS_RESET (err
// eventfd) and never the thread, and stopping it leaks no descriptor.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { setTimeout as sleep } from 'node:timers/promises';
import type { GuestAddress } from '../../src/memory/address.js';
import { createMemfdMemory, releaseRegions } from '../../src/memory/memfd-memory.js';
import * as libc from '../../src/native/libc.js';
import { POLLIN, SOCK_CLOEXEC, SOCK_NONBLOCK, poll, socketPair } from '../../src/native/socket-calls.js';
import { VIRTIO_F_VERSION_1 } from '../../src/virtio/queue/features.js';
import { VhostUserBackend } from '../../src/vhost-user/backend.js';
import { VhostUserConnection } from '../../src/vhost-user/connection.js';
import { FdPoller } from '../../src/vhost-user/fd-poller.js';
import type { HostedFsOptions } from '../../src/vhost-user/hosted-fs.js';
import { PROTOCOL_F_REPLY_ACK, Request, VHOST_USER_F_PROTOCOL_FEATURES } from '../../src/vhost-user/protocol.js';
import { QueueThreadDevice } from '../../src/vhost-user/queue-thread.js';
import { FakeQueue } from '../virtio/fake-driver.js';
import { FakeFrontEnd, concat, fdTargets, openFds, u32s, u64 } from './fake-front-end.js';
import { fuseRequest as fuse } from '../fs/fake-fuse-client.js';

const UVA_BASE = 0x7f34_0000_0000n;
const MEMORY = 8 << 20;
// Room for more requests than one queue run takes (hosted-fs yields after 64).
const QUEUE_SIZE = 512;
const OP = { LOOKUP: 1, GETATTR: 3, READ: 15, WRITE: 16, INIT: 26, CREATE: 35, BATCH_FORGET: 42 } as const;
const ATTR_REPLY = 16 + 104;
const HOSTED_FS = new URL('../../src/vhost-user/hosted-fs.js', import.meta.url);

function cstr(s: string): Uint8Array {
  return concat(new TextEncoder().encode(s), new Uint8Array(1));
}

interface Rig {
  readonly front: FakeFrontEnd;
  readonly hiprio: FakeQueue;
  readonly requests: FakeQueue;
  readonly kicks: readonly number[];
  readonly call: number;
  readonly err: number;
  readonly logs: string[];
  readonly memory: ReturnType<typeof createMemfdMemory>['memory'];
  /** Posts a request with a writable reply buffer; returns the chain head and the reply's address. */
  post(request: Uint8Array, replyBytes?: number): { head: number; reply: number };
  kick(queue?: number): void;
  /** Waits (poll, bounded) until the call eventfd fired; false on timeout. */
  waitCall(timeoutMs?: number): boolean;
  close(): Promise<void>;
}

async function ack(front: FakeFrontEnd, request: number): Promise<bigint | undefined> {
  const reply = await front.receive(5000);
  if (reply === undefined) return undefined;
  assert.equal(reply.request, request);
  // GET_VRING_BASE answers {index u32, num u32}; the others a u64.
  return request === Request.GetVringBase ? BigInt(reply.payload.getUint32(4, true)) : reply.payload.getBigUint64(0, true);
}

/** Connects a fake front end to `device` and brings up the hiprio and one request queue. */
async function bringUp(device: QueueThreadDevice, poller: FdPoller): Promise<Rig> {
  const [backendFd, frontFd] = socketPair(SOCK_NONBLOCK | SOCK_CLOEXEC);
  const logs: string[] = [];
  const connection: VhostUserConnection = new VhostUserConnection(backendFd, poller, (m) => backend.handle(m));
  const backend = new VhostUserBackend(device, connection, poller, (line) => logs.push(line));
  const front = new FakeFrontEnd(frontFd);
  const { memory, regions } = createMemfdMemory([{ start: 0 as GuestAddress, size: MEMORY }]);
  const kicks = [libc.eventfd(0, libc.EFD_NONBLOCK | libc.EFD_CLOEXEC), libc.eventfd(0, libc.EFD_NONBLOCK | libc.EFD_CLOEXEC)];
  const call = libc.eventfd(0, libc.EFD_NONBLOCK | libc.EFD_CLOEXEC);
  const err = libc.eventfd(0, libc.EFD_NONBLOCK | libc.EFD_CLOEXEC);
  const ringBytes = 0x4000;
  const hiprio = new FakeQueue(memory, QUEUE_SIZE, 0, 0x10_0000, 0x18_0000);
  const requests = new FakeQueue(memory, QUEUE_SIZE, ringBytes * 2, 0x20_0000, MEMORY);
  front.send(Request.SetFeatures, u64(VIRTIO_F_VERSION_1 | VHOST_USER_F_PROTOCOL_FEATURES));
  front.send(Request.SetProtocolFeatures, u64(PROTOCOL_F_REPLY_ACK));
  front.send(Request.SetMemTable, concat(u32s(1, 0), u64(0n), u64(BigInt(MEMORY)), u64(UVA_BASE), u64(0n)), [regions[0]!.fd], { needReply: true });
  assert.equal(await ack(front, Request.SetMemTable), 0n);
  const uva = (gpa: number): bigint => UVA_BASE + BigInt(gpa);
  [hiprio, requests].forEach((q, i) => {
    front.send(Request.SetVringNum, u32s(i, QUEUE_SIZE));
    front.send(Request.SetVringBase, u32s(i, 0));
    front.send(Request.SetVringAddr, concat(u32s(i, 0), u64(uva(q.config.descAddr)), u64(uva(q.config.deviceAddr)), u64(uva(q.config.driverAddr)), u64(0n)));
    front.send(Request.SetVringCall, u64(BigInt(i)), [call]);
    front.send(Request.SetVringErr, u64(BigInt(i)), [err]);
    front.send(Request.SetVringKick, u64(BigInt(i)), [kicks[i]!]);
    front.send(Request.SetVringEnable, u32s(i, 1));
  });
  front.send(Request.SetOwner, new Uint8Array(), [], { needReply: true });
  assert.equal(await ack(front, Request.SetOwner), 0n);
  const pollSet = new Uint8Array(8);
  const counter = new Uint8Array(8);
  const one = u64(1n);
  return {
    front, hiprio, requests, kicks, call, err, logs, memory,
    post(request, replyBytes = 4096) {
      const posted = requests.post([{ length: request.length, writable: false, data: request }, { length: replyBytes, writable: true }]);
      return { head: posted.head, reply: posted.addresses[1]! };
    },
    kick(queue = 1) {
      libc.write(kicks[queue]!, one, 8);
    },
    waitCall(timeoutMs = 5000) {
      const v = new DataView(pollSet.buffer);
      v.setInt32(0, call, true);
      v.setInt16(4, POLLIN, true);
      v.setInt16(6, 0, true);
      if (poll(pollSet, 1, timeoutMs) !== 1) return false;
      libc.read(call, counter, 8);
      return true;
    },
    async close() {
      libc.close(frontFd);
      await connection.closedReason;
      for (const fd of [...kicks, call, err]) libc.close(fd);
      releaseRegions(regions);
    },
  };
}

function replyAt(rig: Rig, address: number, length: number): { length: number; error: number; unique: bigint; body: Uint8Array } {
  const bytes = rig.memory.read(address, length);
  const v = new DataView(bytes.buffer, bytes.byteOffset);
  return { length: v.getUint32(0, true), error: 0 - v.getInt32(4, true), unique: v.getBigUint64(8, true), body: bytes.subarray(16) };
}

/** Sends one request, waits for its completion, returns the decoded reply. */
function roundTrip(rig: Rig, request: Uint8Array, replyBytes = 4096): ReturnType<typeof replyAt> {
  const { head, reply } = rig.post(request, replyBytes);
  rig.kick();
  assert.ok(rig.waitCall(), 'call eventfd signalled by the queue thread');
  const used = rig.requests.takeUsed();
  assert.equal(used.length, 1);
  assert.equal(used[0]!.id, head);
  return replyAt(rig, reply, used[0]!.length);
}

function init(): Uint8Array {
  return fuse(OP.INIT, 0n, concat(u32s(7, 31, 128 * 1024, 0xffffffff, 0), new Uint8Array(44)));
}

async function withDevice(body: (device: QueueThreadDevice, poller: FdPoller, shared: string) => Promise<void>, pollUs?: number): Promise<void> {
  const shared = mkdtempSync(join(tmpdir(), 'novm-qthread-'));
  const poller = new FdPoller();
  const options: HostedFsOptions = { read: [], write: [`/=${shared}`], tag: 'qthread', requestQueues: 1, packed: false, writeback: false };
  const device = await QueueThreadDevice.start(HOSTED_FS, options, { log: () => {}, ...(pollUs === undefined ? {} : { pollUs }) });
  try {
    // The thread's JIT warm-up opens and closes files of its own: let it finish, so that the
    // descriptor counts below see only what the test did.
    for (let i = 0; i < 500 && !device.summary().includes('warmUpRequests='); i++) await sleep(20);
    await body(device, poller, shared);
  } finally {
    await device.close();
    await poller.stop();
    rmSync(shared, { recursive: true, force: true });
  }
}

// The first Worker and koffi calls open descriptors of their own: warm up before counting.
await withDevice(async () => {});

test('queue thread: FUSE requests are served from the thread (kick -> its poll -> call), data I/O inline', async (t) => {
  const fdsAtStart = openFds();
  await withDevice(async (device, poller, shared) => {
    assert.equal(device.deviceType, 26);
    assert.deepEqual(device.queueMaxSizes, [1024, 1024]);
    const config = new Uint8Array(40);
    device.readConfig(0, config);
    assert.equal(new TextDecoder().decode(config.subarray(0, 7)), 'qthread');
    const rig = await bringUp(device, poller);
    try {
      const initReply = roundTrip(rig, init());
      assert.equal(initReply.error, 0);
      assert.equal(initReply.length, 16 + 64);
      // CREATE, then a 300 KiB write (beyond the inline-write size: the SyncDataIo path) and a
      // read that runs past the end of the file (short: the blocking read path).
      const created = roundTrip(rig, fuse(OP.CREATE, 1n, concat(u32s(0o2 | 0o100, 0o644, 0, 0), cstr('data.bin'))));
      assert.equal(created.error, 0);
      const node = new DataView(created.body.buffer, created.body.byteOffset).getBigUint64(0, true);
      const data = new Uint8Array(300 * 1024).map((_, i) => (i * 7 + 3) & 0xff);
      const written = roundTrip(rig, fuse(OP.WRITE, node, concat(u64(0n), u64(0n), u32s(data.length, 0), u64(0n), u32s(0, 0), data)));
      assert.equal(written.error, 0);
      assert.equal(new DataView(written.body.buffer, written.body.byteOffset).getUint32(0, true), data.length);
      assert.deepEqual(new Uint8Array(readFileSync(join(shared, 'data.bin'))), data);
      const read = roundTrip(rig, fuse(OP.READ, node, concat(u64(0n), u64(200n * 1024n), u32s(256 * 1024, 0), u64(0n), u32s(0, 0))), 16 + 256 * 1024);
      assert.equal(read.error, 0);
      assert.equal(read.length, 16 + 100 * 1024);
      assert.deepEqual(read.body.subarray(0, 100 * 1024), data.subarray(200 * 1024));
      // BATCH_FORGET on the hiprio queue is served by the same thread (no reply bytes).
      rig.hiprio.post([{ length: 40 + 8 + 16, writable: false, data: fuse(OP.BATCH_FORGET, 0n, concat(u32s(1, 0), u64(node), u64(1n))) }]);
      rig.kick(0);
      assert.ok(rig.waitCall());
      assert.deepEqual(rig.hiprio.takeUsed().map((u) => u.length), [0]);
      // Round trips through the thread: every reply checked, the time per request reported.
      const n = 2000;
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < n; i++) {
        const r = roundTrip(rig, fuse(OP.GETATTR, 1n, new Uint8Array(16)), 256);
        if (r.error !== 0 || r.length !== ATTR_REPLY) assert.fail(`GETATTR ${i}: error ${r.error} length ${r.length}`);
      }
      const us = Number(process.hrtime.bigint() - t0) / n / 1000;
      t.diagnostic(`kick -> call round trip through the queue thread (GETATTR, fake front end in this process): ${us.toFixed(1)} us`);
      assert.match(device.summary(), /requests=2004 /);
      assert.deepEqual(rig.logs.filter((l) => !l.includes('sealed')), []);
    } finally {
      await rig.close();
    }
  });
  assert.equal(openFds(), fdsAtStart, 'the thread closed its duplicated descriptors and the control eventfd');
});

/** Serves `count` kicked GETATTRs back to back (each wait is short: the poll window grows). */
function kickedGetattrs(rig: Rig, count: number): void {
  for (let i = 0; i < count; i++) assert.equal(roundTrip(rig, fuse(OP.GETATTR, 1n, new Uint8Array(16)), 256).error, 0);
}

/** A device with busy polling up to `pollUs`: INIT and 20 quick kicked GETATTRs (enough to open
 *  a 100 ms window, doubling from 10 us), then one GETATTR posted without a kick. */
async function unkickedAfterBurst(pollUs: number, check: (device: QueueThreadDevice, rig: Rig, head: number) => Promise<void>): Promise<void> {
  await withDevice(async (device, poller) => {
    const rig = await bringUp(device, poller);
    try {
      assert.equal(roundTrip(rig, init()).error, 0);
      kickedGetattrs(rig, 20);
      const { head } = rig.post(fuse(OP.GETATTR, 1n, new Uint8Array(16)), 256);
      await check(device, rig, head);
    } finally {
      await rig.close();
    }
  }, pollUs);
}

test('queue thread: busy polling serves a request posted without a kick while its window is open; idle, the driver kicks again', async () => {
  await unkickedAfterBurst(100_000, async (device, rig, head) => {
    // As a real driver does, look at the ring after publishing: kicks off means the thread
    // promised to find the request itself (by watching, or by the re-check when it stops).
    // On a loaded host the window may have closed before the post; then kick and try again.
    const kicksOff = (): boolean => (rig.memory.readU16LE(rig.requests.config.deviceAddr) & 1) !== 0;
    let unkicked = kicksOff();
    let posted = head;
    for (let attempt = 0; ; attempt++) {
      if (!unkicked) rig.kick();
      assert.ok(rig.waitCall(5000), unkicked ? 'served without a kick: the thread was watching the ring' : 'served after a kick');
      assert.deepEqual(rig.requests.takeUsed().map((u) => u.id), [posted]);
      if (unkicked || attempt === 9) break;
      kickedGetattrs(rig, 20);
      posted = rig.post(fuse(OP.GETATTR, 1n, new Uint8Array(16)), 256).head;
      unkicked = kicksOff();
    }
    assert.ok(unkicked, 'in 10 tries the thread never left kicks off after a burst');
    assert.match(device.summary(), /pollHits=[1-9]/);
    // The window runs out: notifications are turned back on (used->flags clear) and a kick works.
    await sleep(400);
    assert.equal(kicksOff(), false, 'USED_F_NO_NOTIFY cleared');
    kickedGetattrs(rig, 1);
  });
});

test('queue thread: with busy polling off (--poll-us 0) a request without a kick waits for its kick', async () => {
  await unkickedAfterBurst(0, async (device, rig, head) => {
    assert.equal(rig.memory.readU16LE(rig.requests.config.deviceAddr) & 1, 0, 'kicks are on: the driver must kick');
    assert.equal(rig.waitCall(300), false, 'nobody watches the ring');
    rig.kick();
    assert.ok(rig.waitCall());
    assert.deepEqual(rig.requests.takeUsed().map((u) => u.id), [head]);
    assert.match(device.summary(), /pollHits=0 /);
  });
});

test('queue thread: the JIT warm-up runs before the front end activates the device', async () => {
  await withDevice(async (device, poller) => {
    assert.match(device.summary(), /warmUpRequests=[1-9]\d{3,} warmUpMs=\d+/);
    const rig = await bringUp(device, poller);
    try {
      assert.equal(roundTrip(rig, init()).error, 0);
      kickedGetattrs(rig, 3);
    } finally {
      await rig.close();
    }
  });
});

test('queue thread: GET_VRING_BASE with requests in the ring reports a position that loses and repeats nothing', async () => {
  await withDevice(async (device, poller) => {
    const rig = await bringUp(device, poller);
    try {
      assert.equal(roundTrip(rig, init()).error, 0);
      // Two descriptors per request: at most QUEUE_SIZE / 2 in the ring at once; more than one
      // queue run takes, so the stop may land between runs as well as before the first.
      const count = 200;
      const posted = new Map<number, { reply: number; unique: bigint }>();
      for (let i = 0; i < count; i++) {
        const request = fuse(OP.GETATTR, 1n, new Uint8Array(16));
        const { head, reply } = rig.post(request, 256);
        posted.set(head, { reply, unique: new DataView(request.buffer).getBigUint64(8, true) });
      }
      rig.kick();
      // Stop the ring at once: the thread may be anywhere in the run.
      rig.front.send(Request.GetVringBase, u32s(1, 0));
      const base = Number(await ack(rig.front, Request.GetVringBase));
      const usedIdx = rig.memory.readU16LE(rig.requests.config.deviceAddr + 2);
      // The ring's indices count INIT too.
      assert.ok(base >= 1 && base <= count + 1, `base ${base}`);
      assert.equal(usedIdx, base, 'every request taken before the stop is in the used ring');
      await sleep(20);
      assert.equal(rig.memory.readU16LE(rig.requests.config.deviceAddr + 2), usedIdx, 'a stopped ring is not touched');
      // Restart from the reported base (vhost-user.rst: SET_VRING_BASE, then a new kick fd).
      const kick = libc.eventfd(0, libc.EFD_NONBLOCK | libc.EFD_CLOEXEC);
      rig.front.send(Request.SetVringBase, u32s(1, base));
      rig.front.send(Request.SetVringKick, u64(1n), [kick]);
      rig.front.send(Request.SetVringEnable, u32s(1, 1), [], { needReply: true });
      assert.equal(await ack(rig.front, Request.SetVringEnable), 0n);
      const deadline = Date.now() + 5000;
      const seen = new Map<number, number>();
      // The used ring counts from 1 (INIT) on.
      rig.requests.takeUsed().forEach((u) => seen.set(u.id, (seen.get(u.id) ?? 0) + 1));
      while (seen.size < count && Date.now() < deadline) {
        rig.waitCall(100);
        rig.requests.takeUsed().forEach((u) => seen.set(u.id, (seen.get(u.id) ?? 0) + 1));
      }
      assert.equal(seen.size, count, 'every request completed');
      for (const [head, times] of seen) {
        assert.equal(times, 1, `head ${head} completed once`);
        const expected = posted.get(head)!;
        const r = replyAt(rig, expected.reply, ATTR_REPLY);
        assert.equal(r.unique, expected.unique);
        assert.equal(r.error, 0);
      }
      libc.close(kick);
    } finally {
      await rig.close();
    }
  });
});

test('queue thread: a reset while requests are queued stops ring access at once; the next front end is served', async () => {
  await withDevice(async (device, poller) => {
    const first = await bringUp(device, poller);
    try {
      assert.equal(roundTrip(first, init()).error, 0);
      for (let i = 0; i < 200; i++) first.post(fuse(OP.GETATTR, 1n, new Uint8Array(16)), 256);
      first.kick();
      first.front.send(Request.ResetOwner, new Uint8Array(), [], { needReply: true });
      assert.equal(await ack(first.front, Request.ResetOwner), 0n);
      const usedIdx = first.memory.readU16LE(first.requests.config.deviceAddr + 2);
      first.kick();
      await sleep(30);
      assert.equal(first.memory.readU16LE(first.requests.config.deviceAddr + 2), usedIdx, 'no ring access after the reset returned');
    } finally {
      await first.close();
    }
    const second = await bringUp(device, poller);
    try {
      assert.equal(roundTrip(second, init()).error, 0);
      assert.equal(roundTrip(second, fuse(OP.GETATTR, 1n, new Uint8Array(16)), 256).length, ATTR_REPLY);
    } finally {
      await second.close();
    }
  });
});

test('queue thread: a hostile ring costs NEEDS_RESET (err eventfd, one log line), never the thread', async () => {
  await withDevice(async (device, poller) => {
    const rig = await bringUp(device, poller);
    try {
      assert.equal(roundTrip(rig, init()).error, 0);
      // A descriptor far outside guest memory, then a self-referencing chain.
      const head = 5;
      rig.requests.writeDescriptor(head, 0x7fff_0000, 64, 0, 0);
      rig.requests.publish(head);
      rig.kick();
      const pollSet = new Uint8Array(8);
      const v = new DataView(pollSet.buffer);
      v.setInt32(0, rig.err, true);
      v.setInt16(4, POLLIN, true);
      // The err eventfd is written by the main thread when the thread's event arrives.
      const deadline = Date.now() + 5000;
      while (Date.now() < deadline && poll(pollSet, 1, 0) !== 1) await sleep(5);
      assert.equal(poll(pollSet, 1, 0), 1, 'err eventfd signalled');
      assert.equal(rig.logs.filter((l) => l.includes('needs reset')).length, 1, rig.logs.join('\n'));
    } finally {
      await rig.close();
    }
    const loop = await bringUp(device, poller);
    try {
      assert.equal(roundTrip(loop, init()).error, 0);
      loop.requests.writeDescriptor(7, 0x30_0000, 64, 1, 7);
      loop.requests.publish(7);
      loop.kick();
      await sleep(50);
      assert.ok(loop.logs.some((l) => l.includes('needs reset')), loop.logs.join('\n'));
    } finally {
      await loop.close();
    }
    const healthy = await bringUp(device, poller);
    try {
      assert.equal(roundTrip(healthy, init()).error, 0);
      assert.equal(roundTrip(healthy, fuse(OP.GETATTR, 1n, new Uint8Array(16)), 256).length, ATTR_REPLY);
    } finally {
      await healthy.close();
    }
  });
});

test('queue thread: a device that cannot be built is a clean error, and no thread is left behind', async () => {
  const options: HostedFsOptions = { read: [], write: ['/=/nonexistent/novm-qthread'], tag: 'x', requestQueues: 1, packed: false, writeback: false };
  await assert.rejects(QueueThreadDevice.start(HOSTED_FS, options), (error: Error) => error.name === 'InputError' && /nonexistent/.test(error.message));
});

test('queue thread: process.exit() ends the process while the thread is blocked in poll(2)', async () => {
  const child = spawn(process.execPath, [new URL('./queue-thread-exit-child.js', import.meta.url).pathname], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
  const code = await Promise.race([new Promise<number | null>((resolve) => child.once('exit', resolve)), sleep(10_000).then(() => 'hung' as const)]);
  if (code === 'hung') child.kill('SIGKILL');
  assert.equal(code, 0, 'exited by itself with status 0');
  assert.equal(out, 'started\n');
});

test('queue thread: fuzzed message sequences get answers, refusals or a closed connection; descriptors are all closed and the device still serves', async () => {
  await withDevice(async (device, poller) => {
    const { regions } = createMemfdMemory([{ start: 0 as GuestAddress, size: 1 << 20 }]);
    const message = fc.record({
      request: fc.oneof(fc.integer({ min: 0, max: 45 }), fc.constantFrom(5, 8, 9, 10, 11, 12, 13, 18, 24, 25)),
      payload: fc.uint8Array({ maxLength: 80 }),
      withFd: fc.constantFrom('none', 'eventfd', 'memfd'),
      needReply: fc.boolean(),
    });
    const fdsBefore = fdTargets();
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(message, { minLength: 1, maxLength: 12 }), async (messages) => {
          const [backendFd, frontFd] = socketPair(SOCK_NONBLOCK | SOCK_CLOEXEC);
          const connection: VhostUserConnection = new VhostUserConnection(backendFd, poller, (m) => backend.handle(m));
          const backend = new VhostUserBackend(device, connection, poller, () => {});
          const front = new FakeFrontEnd(frontFd);
          front.send(Request.SetProtocolFeatures, u64(PROTOCOL_F_REPLY_ACK));
          for (const m of messages) {
            if (connection.isClosed) break;
            const fds: number[] = [];
            if (m.withFd === 'eventfd') fds.push(libc.eventfd(0, libc.EFD_CLOEXEC));
            if (m.withFd === 'memfd') fds.push(regions[0]!.fd);
            try {
              front.send(m.request, m.payload, fds, { needReply: m.needReply });
            } catch {
              // The back end already closed its end.
            } finally {
              if (m.withFd === 'eventfd') libc.close(fds[0]!);
            }
            await sleep(0);
          }
          await sleep(5);
          if (!connection.isClosed) {
            front.send(Request.GetQueueNum, new Uint8Array());
            let answered = false;
            for (let i = 0; i < 20 && !answered; i++) {
              const reply = await front.receive(500);
              if (reply === undefined) break;
              answered = reply.request === Request.GetQueueNum;
            }
            assert.ok(answered || connection.isClosed, 'the back end still answers');
          }
          libc.close(frontFd);
          await connection.closedReason;
        }),
        { numRuns: 40 },
      );
      assert.deepEqual(fdTargets().filter((t) => !fdsBefore.includes(t)), [], 'descriptors opened and never closed (the thread closes its duplicates)');
    } finally {
      releaseRegions(regions);
    }
    const rig = await bringUp(device, poller);
    try {
      assert.equal(roundTrip(rig, init()).error, 0);
      assert.equal(roundTrip(rig, fuse(OP.GETATTR, 1n, new Uint8Array(16)), 256).length, ATTR_REPLY);
    } finally {
      await rig.close();
    }
  });
});
