// virtio-fs READ and WRITE without a copy of their data: on guest RAM mapped in this process
// (memfd, as vhost-user and the in-process VMM have it) the FUSE engine moves the data with
// preadv/pwritev on iovecs that point into the chain's segments. Each scenario runs twice, on
// mapped RAM and on anonymous RAM (the copying path), and both must give the same used lengths,
// the same bytes in the guest and the same file; the device's counters show which path ran.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { LibuvDataIo, SyncDataIo, transferAllVectored, type DataIo } from '../../src/fs/data-io.js';
import { configFromFlags, FuseHandler, UnionFs } from '../../src/fs/index.js';
import type { MetaIo } from '../../src/fs/meta-io.js';
import type { GuestAddress } from '../../src/memory/address.js';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { createMemfdMemory, releaseRegions, type MappedRegion } from '../../src/memory/memfd-memory.js';
import type { ActivationContext } from '../../src/virtio/device.js';
import { ChainPayload, IOV_MAX } from '../../src/virtio/devices/fs/chain-payload.js';
import { FsDevice } from '../../src/virtio/devices/fs/fs-device.js';
import { DescriptorChain } from '../../src/virtio/queue/descriptor-chain.js';
import { VIRTIO_F_VERSION_1 } from '../../src/virtio/queue/features.js';
import { FakeFuseClient, OP, u32, u64 } from '../fs/fake-fuse-client.js';
import { FakeQueue } from './fake-driver.js';

const MiB = 1 << 20;
/** Two regions, adjacent in guest physical space but separate host mappings. */
const REGION = 4 * MiB;
const QUEUE_SIZE = 2048;
const DATA_START = MiB;
const F_NEXT = 1;
const F_WRITE = 2;

interface Segment {
  readonly address: number;
  readonly length: number;
  readonly writable: boolean;
}

/** Guest RAM, one request queue with rings at 0, and a cursor handing out data addresses. */
class Rig {
  readonly hiprio: FakeQueue;
  readonly queue: FakeQueue;
  readonly context: ActivationContext;
  private descriptor = 0;
  private cursor = DATA_START;

  /** Resets: reasons the device gave for NEEDS_RESET (a well-behaved test expects none). */
  readonly resets: string[] = [];

  constructor(readonly memory: GuestMemory) {
    // Fresh rings (a previous rig's indices must not be read as new requests).
    memory.fill(0, DATA_START);
    const ringBytes = 64 * 1024;
    this.hiprio = new FakeQueue(memory, 16, 0, DATA_START, DATA_START);
    this.queue = new FakeQueue(memory, QUEUE_SIZE, ringBytes, DATA_START, DATA_START);
    this.context = {
      memory,
      features: VIRTIO_F_VERSION_1,
      queues: [this.hiprio.config, this.queue.config],
      notifyQueue: () => {},
      notifyConfig: () => {},
      needsReset: (reason) => this.resets.push(reason),
    };
  }

  /** `length` bytes of guest RAM, `gap` bytes after the previous (a gap keeps segments apart on the host). */
  take(length: number, gap = 0): number {
    const address = this.cursor + gap;
    this.cursor = address + length;
    if (this.cursor > 2 * REGION - MiB) throw new Error('test rig out of guest memory');
    return address;
  }

  /** Moves the cursor so that the next take() starts `before` bytes below the first region's end. */
  straddle(before: number): void {
    this.cursor = REGION - before;
  }

  rewind(): void {
    this.cursor = DATA_START;
  }

  post(segments: readonly Segment[]): number {
    const head = this.descriptor;
    segments.forEach((s, i) => {
      const index = (head + i) % QUEUE_SIZE;
      this.queue.writeDescriptor(index, s.address, s.length, (s.writable ? F_WRITE : 0) | (i + 1 < segments.length ? F_NEXT : 0), (index + 1) % QUEUE_SIZE);
    });
    this.descriptor = (head + segments.length) % QUEUE_SIZE;
    this.queue.publish(head);
    return head;
  }

  /** Bytes of the given segments, concatenated. */
  gather(segments: readonly Segment[]): Buffer {
    return Buffer.concat(segments.map((s) => Buffer.from(this.memory.read(s.address, s.length))));
  }
}

/** Splits `total` bytes into segments of the given sizes (cycled), each `gap` bytes after the last. */
function split(rig: Rig, total: number, sizes: readonly number[], writable: boolean, gap = 0): Segment[] {
  const out: Segment[] = [];
  for (let done = 0, i = 0; done < total; i++) {
    const length = Math.min(sizes[i % sizes.length]!, total - done);
    out.push({ address: rig.take(length, gap), length, writable });
    done += length;
  }
  return out;
}

function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

let nextUnique = 1000n;
function header(opcode: number, nodeid: bigint, bodyLength: number, dataLength: number): Buffer {
  const h = Buffer.alloc(40);
  h.writeUInt32LE((40 + bodyLength + dataLength) >>> 0, 0);
  h.writeUInt32LE(opcode, 4);
  h.writeBigUInt64LE(nextUnique++, 8);
  h.writeBigUInt64LE(nodeid, 16);
  return h;
}

function writeHeaders(nodeid: bigint, fh: bigint, offset: number, size: number): Buffer {
  return Buffer.concat([header(OP.WRITE, nodeid, 40, size), u64(fh, offset), u32(size, 0), u64(0), u32(0, 0)]);
}

function readHeaders(nodeid: bigint, fh: bigint, offset: number, size: number): Buffer {
  return Buffer.concat([header(OP.READ, nodeid, 40, 0), u64(fh, offset), u32(size, 0), u64(0), u32(0, 0)]);
}

interface Outcome {
  readonly steps: Array<{ name: string; used: number; reply: Buffer }>;
  readonly file: Buffer;
  readonly stats: FsDevice['stats'];
}

/** Puts headers (and data) in the readable segments, posts, kicks, waits for the reply. */
async function exchange(rig: Rig, device: FsDevice, readable: readonly Segment[], bytes: Buffer, writable: readonly Segment[]): Promise<{ used: number; reply: Buffer }> {
  let at = 0;
  for (const s of readable) {
    rig.memory.write(s.address, bytes.subarray(at, at + s.length));
    at += s.length;
  }
  assert.equal(at, bytes.length, 'readable segments hold the request');
  for (const s of writable) rig.memory.fill(s.address, s.length, 0xee);
  const head = rig.post([...readable, ...writable]);
  device.notify(1);
  let used = rig.queue.takeUsed();
  for (let i = 0; i < 200 && used.length === 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 5));
    used = rig.queue.takeUsed();
  }
  assert.deepEqual(rig.resets, []);
  assert.equal(used.length, 1, 'one reply');
  assert.equal(used[0]!.id, head);
  const reply = rig.gather(writable);
  // The unique ids differ from run to run: compare everything else.
  if (reply.length >= 16) reply.fill(0, 8, 16);
  return { used: used[0]!.length, reply };
}

/** The scenarios, on the given memory; returns what the guest and the host file saw. */
async function scenarios(memory: GuestMemory, dataIo: DataIo, options: { zeroCopy?: boolean } = {}): Promise<Outcome> {
  const dir = mkdtempSync(join(tmpdir(), 'novm-zero-copy-'));
  const union = new UnionFs(configFromFlags([], [`/=${dir}`]));
  const handler = new FuseHandler(union, { log: () => undefined, dataIo });
  const client = new FakeFuseClient(handler);
  const device = new FsDevice(handler, { tag: 'z', log: () => {}, queueSize: QUEUE_SIZE, ...options });
  const rig = new Rig(memory);
  device.activate(rig.context);
  const steps: Outcome['steps'] = [];
  try {
    assert.equal((await client.init()).error, 0);
    const created = await client.create(1, 'f');
    assert.equal(created.error, 0);
    const { nodeid, fh } = created;
    const step = async (name: string, readable: readonly Segment[], bytes: Buffer, writable: readonly Segment[]) => {
      rig.rewind();
      steps.push({ name, ...(await exchange(rig, device, readable, bytes, writable)) });
    };
    const big = pattern(300_000, 7);
    const small = pattern(5000, 9);

    // WRITE, 300 000 bytes (beyond the inline size: the DataIo's path) in 1..64 KiB pieces with
    // gaps, headers alone in the first segment (as Linux lays it out).
    {
      const hdr = { address: rig.take(80), length: 80, writable: false };
      const data = split(rig, big.length, [1, 7, 4096, 333, 65536, 512], false, 8);
      await step('write-big', [hdr, ...data], Buffer.concat([writeHeaders(nodeid, fh, 0, big.length), big]), [{ address: rig.take(24), length: 24, writable: true }]);
    }
    // WRITE of 5000 bytes inline, headers split 40 + 40 and data starting inside the second
    // header segment; then the same bytes once more in 1100 contiguous 1..9-byte segments (they
    // merge into one iovec) at offset 300 000.
    {
      const a = { address: rig.take(40), length: 40, writable: false };
      const b = { address: rig.take(140, 16), length: 140, writable: false };
      const data = split(rig, small.length - 100, [97, 3, 1000], false, 4);
      await step('write-small', [a, b, ...data], Buffer.concat([writeHeaders(nodeid, fh, 1000, small.length), small]), [{ address: rig.take(24), length: 24, writable: true }]);
      const hdr = { address: rig.take(80), length: 80, writable: false };
      const bits = split(rig, small.length, [1, 9, 2, 3], false);
      assert.ok(bits.length > IOV_MAX);
      await step('write-contiguous', [hdr, ...bits], Buffer.concat([writeHeaders(nodeid, fh, 300_000, small.length), small]), [{ address: rig.take(24), length: 24, writable: true }]);
    }
    // WRITE in 1100 separate pieces: more than IOV_MAX iovecs, so copied.
    {
      const hdr = { address: rig.take(80), length: 80, writable: false };
      const bits = split(rig, 1100, [1], false, 3);
      await step('write-too-many-iovecs', [hdr, ...bits], Buffer.concat([writeHeaders(nodeid, fh, 305_000, 1100), pattern(1100, 3)]), [{ address: rig.take(24), length: 24, writable: true }]);
    }
    // WRITE whose data segment crosses the first region's end: copied.
    {
      const hdr = { address: rig.take(80), length: 80, writable: false };
      const out = { address: rig.take(24), length: 24, writable: true };
      rig.straddle(100);
      const data = { address: rig.take(300), length: 300, writable: false };
      await step('write-across-regions', [hdr, data], Buffer.concat([writeHeaders(nodeid, fh, 500, 300), pattern(300, 5)]), [out]);
    }

    // READ of the whole file into pieces of odd sizes with gaps (header in its own segment).
    {
      const hdr = { address: rig.take(80), length: 80, writable: false };
      const out = { address: rig.take(16), length: 16, writable: true };
      const data = split(rig, 306_100, [4096, 1, 777, 65536, 13], true, 8);
      await step('read-all', [hdr], readHeaders(nodeid, fh, 0, 306_100), [out, ...data]);
    }
    // READ near the end: a short read (end of file) that stops inside a segment, header and the
    // first data in one segment, a larger buffer than asked for.
    {
      const hdr = { address: rig.take(80), length: 80, writable: false };
      const data = split(rig, 16 + 8192, [100, 3, 4000], true, 8);
      await step('read-eof', [hdr], readHeaders(nodeid, fh, 306_100 - 1234, 8000), data);
    }
    // READ at end of file: nothing.
    {
      const hdr = { address: rig.take(80), length: 80, writable: false };
      await step('read-past-eof', [hdr], readHeaders(nodeid, fh, 400_000, 4096), [{ address: rig.take(16), length: 16, writable: true }, { address: rig.take(4096), length: 4096, writable: true }]);
    }
    // READ into a buffer smaller than asked for: the reply is copied and cut, as without zero copy.
    {
      const hdr = { address: rig.take(80), length: 80, writable: false };
      await step('read-small-buffer', [hdr], readHeaders(nodeid, fh, 0, 8192), [{ address: rig.take(16), length: 16, writable: true }, { address: rig.take(4000), length: 4000, writable: true }]);
    }
    // READ whose buffer crosses the first region's end: copied.
    {
      const hdr = { address: rig.take(80), length: 80, writable: false };
      const out = { address: rig.take(16), length: 16, writable: true };
      rig.straddle(1000);
      await step('read-across-regions', [hdr], readHeaders(nodeid, fh, 0, 3000), [out, { address: rig.take(3000), length: 3000, writable: true }]);
    }
    // READ with a bad file handle: an error reply, nothing placed.
    {
      const hdr = { address: rig.take(80), length: 80, writable: false };
      await step('read-bad-handle', [hdr], readHeaders(nodeid, 999n, 0, 100), [{ address: rig.take(16), length: 16, writable: true }, { address: rig.take(100), length: 100, writable: true }]);
    }
    // WRITE claiming more data than the chain carries: EINVAL, nothing written.
    {
      const hdr = { address: rig.take(80), length: 80, writable: false };
      const lie = writeHeaders(nodeid, fh, 0, 100);
      lie.writeUInt32LE(80 + 100, 0);
      await step('write-short-chain', [hdr, { address: rig.take(50), length: 50, writable: false }], Buffer.concat([lie, pattern(50, 1)]), [{ address: rig.take(24), length: 24, writable: true }]);
    }
    return { steps, file: readFileSync(join(dir, 'f')), stats: { ...device.stats } };
  } finally {
    device.reset();
    handler.closeAll();
    union.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function mapped(): { memory: GuestMemory; regions: MappedRegion[] } {
  return createMemfdMemory([{ start: 0 as GuestAddress, size: REGION }, { start: REGION as GuestAddress, size: REGION }]);
}

/** Runs body on fresh mapped RAM and unmaps it afterwards, however body ends. */
function withMapped<T>(body: (memory: GuestMemory, regions: MappedRegion[]) => T): T {
  const { memory, regions } = mapped();
  let async = false;
  try {
    const result = body(memory, regions);
    if (result instanceof Promise) {
      async = true;
      return result.finally(() => releaseRegions(regions)) as T;
    }
    return result;
  } finally {
    if (!async) releaseRegions(regions);
  }
}

/** Stops a device rig built on mapped RAM and a temporary directory. */
function tearDown(device: FsDevice, handler: FuseHandler, union: UnionFs, regions: MappedRegion[], dir: string): void {
  device.reset();
  handler.closeAll();
  union.close();
  releaseRegions(regions);
  rmSync(dir, { recursive: true, force: true });
}

function anonymous(): GuestMemory {
  return GuestMemory.anonymous([{ start: 0, size: REGION }, { start: REGION, size: REGION }]);
}

function expectedFile(): Buffer {
  const file = Buffer.alloc(306_100);
  pattern(300_000, 7).copy(file, 0);
  pattern(5000, 9).copy(file, 1000);
  pattern(300, 5).copy(file, 500);
  pattern(5000, 9).copy(file, 300_000);
  pattern(1100, 3).copy(file, 305_000);
  return file;
}

for (const [name, makeDataIo] of [['SyncDataIo', () => new SyncDataIo()], ['LibuvDataIo', () => new LibuvDataIo()]] as const) {
  test(`virtio-fs zero copy (${name}): READ and WRITE on mapped RAM give what the copying path gives`, async () => {
    await withMapped(async (memory) => {
      const direct = await scenarios(memory, makeDataIo());
      const copied = await scenarios(anonymous(), makeDataIo());
      const off = await scenarios(memory, makeDataIo(), { zeroCopy: false });
      const file = expectedFile();
      assert.ok(direct.file.equals(file), 'file written through iovecs');
      assert.ok(copied.file.equals(file), 'file written through copies');
      for (const [i, step] of direct.steps.entries()) {
        assert.equal(step.used, copied.steps[i]!.used, `${step.name}: used length`);
        assert.equal(step.reply.toString('hex', 0, 64), copied.steps[i]!.reply.toString('hex', 0, 64), `${step.name}: first bytes in the guest's buffers`);
        assert.ok(step.reply.equals(copied.steps[i]!.reply), `${step.name}: bytes in the guest's buffers`);
        assert.equal(step.used, off.steps[i]!.used, `${step.name}: used length (zero copy off)`);
      }
      const used = Object.fromEntries(direct.steps.map((s) => [s.name, s.used]));
      const replyLen = (step: string) => direct.steps.find((s) => s.name === step)!.reply.readUInt32LE(0);
      assert.equal(used['write-big'], 24);
      assert.equal(direct.steps[0]!.reply.readUInt32LE(16), 300_000, 'write_out.size');
      assert.equal(used['read-all'], 16 + 306_100);
      assert.equal(used['read-eof'], 16 + 1234);
      assert.equal(replyLen('read-eof'), 16 + 1234);
      assert.equal(used['read-past-eof'], 16);
      assert.equal(used['read-small-buffer'], 16 + 4000, 'cut to the buffer, as the copying path does');
      assert.equal(replyLen('read-small-buffer'), 16 + 8192);
      assert.equal(direct.steps.find((s) => s.name === 'read-bad-handle')!.reply.readInt32LE(4), -9);
      assert.equal(direct.steps.find((s) => s.name === 'write-short-chain')!.reply.readInt32LE(4), -22);
      assert.ok(direct.steps.find((s) => s.name === 'read-all')!.reply.subarray(16).equals(file));
      // Which path ran: every WRITE except the too-scattered, cross-region and lying ones, and
      // every READ whose buffer fits and is mapped (read-all, read-eof, read-past-eof's 0 bytes
      // do not count as placed data).
      assert.equal(direct.stats.zeroCopyWrites, 4, 'write-big, write-small, write-contiguous, write-short-chain');
      const expectedReads = name === 'SyncDataIo' ? 2 : 1; // libuv: the EOF read misses RWF_NOWAIT's full size and is copied
      assert.equal(direct.stats.zeroCopyReads, expectedReads, 'read-all, read-eof');
      assert.equal(direct.stats.gathered, name === 'SyncDataIo' ? 0 : 1, 'only an asynchronous DataIo asks for a copy of a large WRITE');
      for (const outcome of [copied, off]) assert.deepEqual([outcome.stats.zeroCopyReads, outcome.stats.zeroCopyWrites, outcome.stats.gathered], [0, 0, 0]);
    });
  });
}

test('GuestMemory.hostAddressOf: only ranges inside one mapped region', () => {
  withMapped((memory, regions) => {
    const base = Number(regions[0]!.hostAddress);
    assert.equal(memory.hostAddressOf(0, REGION), base);
    assert.equal(memory.hostAddressOf(4096, 10), base + 4096);
    assert.equal(memory.hostAddressOf(REGION + 5, 5), Number(regions[1]!.hostAddress) + 5);
    assert.equal(memory.hostAddressOf(REGION - 1, 2), undefined, 'crosses a region end');
    assert.equal(memory.hostAddressOf(2 * REGION - 1, 2), undefined, 'past the end of RAM');
    assert.equal(memory.hostAddressOf(2 * REGION, 0), undefined);
    assert.equal(memory.hostAddressOf(-1, 1), undefined);
    assert.equal(memory.hostAddressOf(0.5, 1), undefined);
    assert.equal(anonymous().hostAddressOf(0, 1), undefined, 'no host mapping');
    assert.equal(anonymous().hasHostMapping, false);
    assert.equal(memory.hasHostMapping, true);
  });
});

test('DescriptorChain.hostIovecs: merges contiguous segments, refuses what cannot be described', () => {
  withMapped((memory, regions) => {
    const base = Number(regions[0]!.hostAddress);
    const chain = new DescriptorChain(8);
    chain.clear(0);
    for (const [address, length] of [[0x1000, 10], [0x100a, 6], [0x3000, 4], [REGION - 8, 8]] as const) {
      chain.push(address, length);
      chain.readableBytes += length;
    }
    chain.writableStart = chain.count;
    const words = new Uint32Array(4 * 8);
    const iovecs = (offset: number, length: number, max = 8) => {
      const n = chain.hostIovecs(memory, false, offset, length, words, max);
      return n < 0 ? n : Array.from({ length: n }, (_, i) => [words[4 * i]! + words[4 * i + 1]! * 2 ** 32, words[4 * i + 2]!]);
    };
    assert.deepEqual(iovecs(0, 28), [[base + 0x1000, 16], [base + 0x3000, 4], [base + REGION - 8, 8]]);
    assert.deepEqual(iovecs(12, 6), [[base + 0x100c, 4], [base + 0x3000, 2]]);
    assert.equal(iovecs(0, 29), -1, 'more bytes than the side has');
    assert.equal(iovecs(0, 28, 2), -1, 'more iovecs than allowed');
    assert.equal(chain.hostIovecs(anonymous(), false, 0, 4, words, 8), -1, 'anonymous memory');
    assert.equal(chain.hostIovecs(memory, true, 0, 1, words, 8), -1, 'no writable side');
    // A payload trims to a READ's size.
    const payload = new ChainPayload(() => new Uint8Array());
    assert.ok(payload.describe(chain, memory, false, 0, 28));
    assert.equal(payload.iovCount, 3);
    assert.ok(payload.limit(17));
    assert.deepEqual([payload.iovCount, payload.bytes, payload.iov[1], payload.iov[3]], [2, 17, 16n, 1n]);
    assert.equal(payload.limit(18), false);
  });
});

test('virtio-fs zero copy vs hostile chains: READ/WRITE headers over random segments anywhere in RAM', async () => {
  const { memory, regions } = mapped();
  const dir = mkdtempSync(join(tmpdir(), 'novm-zero-copy-hostile-'));
  writeFileSync(join(dir, 'f'), pattern(70_000, 2));
  const union = new UnionFs(configFromFlags([], [`/=${dir}`]));
  const handler = new FuseHandler(union, { log: () => undefined, dataIo: new SyncDataIo() });
  const client = new FakeFuseClient(handler);
  const device = new FsDevice(handler, { tag: 'h', log: () => {}, queueSize: QUEUE_SIZE });
  try {
    assert.equal((await client.init()).error, 0);
    const looked = await client.lookup(1, 'f');
    assert.equal(looked.error, 0);
    const segment = fc.record({
      // Anywhere in RAM, the rings included, some across the region boundary; some past RAM.
      address: fc.oneof(fc.nat(2 * REGION - 1), fc.integer({ min: REGION - 64, max: REGION + 64 }), fc.nat(0x20000), fc.constant(2 * REGION + 4096)),
      length: fc.oneof(fc.nat(64), fc.nat(70_000), fc.constant(0)),
      writable: fc.boolean(),
    });
    const request = fc.record({
      write: fc.boolean(),
      offset: fc.nat(100_000),
      size: fc.oneof(fc.nat(70_000), fc.constant(0xffff_ffff)),
      lenDelta: fc.integer({ min: -100, max: 100 }),
      headerSplit: fc.boolean(),
      segments: fc.array(segment, { maxLength: 12 }),
    });
    await fc.assert(fc.asyncProperty(fc.array(request, { minLength: 1, maxLength: 6 }), async (requests) => {
      const rig = new Rig(memory);
      device.reset();
      device.activate(rig.context);
      for (const r of requests) {
        const hdr = r.write ? writeHeaders(looked.nodeid, 0n, r.offset, r.size) : readHeaders(looked.nodeid, 0n, r.offset, r.size);
        hdr.writeUInt32LE(Math.max(0, hdr.readUInt32LE(0) + r.lenDelta) >>> 0, 0);
        const first = r.headerSplit ? [{ address: rig.take(40), length: 40, writable: false }, { address: rig.take(40), length: 40, writable: false }] : [{ address: rig.take(80), length: 80, writable: false }];
        first.forEach((s, i) => memory.write(s.address, hdr.subarray(40 * i * (first.length - 1), 40 * i * (first.length - 1) + s.length)));
        rig.post([...first, ...r.segments]);
      }
      device.notify(1);
      for (const reason of rig.resets) assert.equal(typeof reason, 'string');
      // Whatever the guest posted, the device served or refused it; a clean ring works afterwards.
      device.reset();
      const clean = new Rig(memory);
      device.activate(clean.context);
      const hdr = { address: clean.take(80), length: 80, writable: false };
      const out = { address: clean.take(16), length: 16, writable: true };
      const data = { address: clean.take(100), length: 100, writable: true };
      const result = await exchange(clean, device, [hdr], readHeaders(looked.nodeid, 0n, 0, 100), [out, data]);
      assert.equal(result.used, 116);
      // Hostile WRITEs may have changed the file: compare with what it holds now.
      assert.ok(result.reply.subarray(16).equals(readFileSync(join(dir, 'f')).subarray(0, 100)));
    }), { numRuns: 150 });
    assert.ok(device.stats.zeroCopyReads + device.stats.zeroCopyWrites > 0, 'the iovec path ran');
  } finally {
    tearDown(device, handler, union, regions, dir);
  }
});

test('SyncDataIo vectored transfers resume after a short transfer inside an iovec, and stop at end of file', () => {
  // iovecs of 4, 6 and 10 bytes at made-up addresses; the fake call moves 7, then 8, then 0 bytes.
  const iov = BigUint64Array.of(1000n, 4n, 2000n, 6n, 3000n, 10n);
  const calls: Array<{ iov: bigint[]; count: number; offset: number }> = [];
  const moves = [7, 8, 0];
  const moved = transferAllVectored((_fd, v, count, offset) => {
    calls.push({ iov: Array.from(v.subarray(0, 2 * count)), count, offset });
    return moves.shift()!;
  }, 3, iov, 3, 20, 100);
  assert.equal(moved, 15);
  assert.deepEqual(calls, [
    { iov: [1000n, 4n, 2000n, 6n, 3000n, 10n], count: 3, offset: 100 },
    { iov: [2003n, 3n, 3000n, 10n], count: 2, offset: 107 },
    { iov: [3005n, 5n], count: 1, offset: 115 },
  ]);
  // Everything in one call: one call, nothing changed.
  const whole = BigUint64Array.of(1000n, 4n, 2000n, 6n);
  let count = 0;
  assert.equal(transferAllVectored(() => (count++, 10), 3, whole, 2, 10, 0), 10);
  assert.equal(count, 1);
});

test('virtio-fs zero copy: WRITEs that wait for a large copy-up are kept as copies, not as iovecs', async () => {
  const { memory, regions } = mapped();
  const dir = mkdtempSync(join(tmpdir(), 'novm-zero-copy-copyup-'));
  mkdirSync(join(dir, 'lower'));
  mkdirSync(join(dir, 'upper'));
  const original = pattern(50_000, 11);
  writeFileSync(join(dir, 'lower', 'big'), original);
  // A MetaIo that copies on a later turn of the event loop, as an I/O worker would.
  const meta: MetaIo = {
    create: () => assert.fail('no CREATE here'),
    mkdir: () => assert.fail('no MKDIR here'),
    copyData: (src, dst, size, done) => setImmediate(() => {
      const bytes = Buffer.alloc(size);
      assert.equal(readSync(src, bytes, 0, size, 0), size);
      assert.equal(writeSync(dst, bytes, 0, size, 0), size);
      done(0);
    }),
    park: () => (resume) => setImmediate(resume),
  };
  const union = new UnionFs(configFromFlags([`/=${join(dir, 'lower')}`], [`/=${join(dir, 'upper')}`]));
  const handler = new FuseHandler(union, { log: () => undefined, dataIo: new SyncDataIo(), metaIo: meta, copyUpInlineMax: 1000 });
  const client = new FakeFuseClient(handler);
  const device = new FsDevice(handler, { tag: 'c', log: () => {}, queueSize: QUEUE_SIZE });
  const rig = new Rig(memory);
  device.activate(rig.context);
  try {
    assert.equal((await client.init()).error, 0);
    const { nodeid, error } = await client.lookup(1, 'big');
    assert.equal(error, 0);
    // Two WRITEs without a file handle in one kick: the first starts the copy-up, the second waits for it.
    const heads: number[] = [];
    for (const [offset, seed] of [[10, 1], [20_000, 2]] as const) {
      const data = pattern(3000, seed);
      const hdr = { address: rig.take(80), length: 80, writable: false };
      const pieces = split(rig, data.length, [1000, 7], false, 8);
      const bytes = Buffer.concat([writeHeaders(nodeid, 0n, offset, data.length), data]);
      let at = 0;
      for (const s of [hdr, ...pieces]) {
        memory.write(s.address, bytes.subarray(at, at + s.length));
        at += s.length;
      }
      heads.push(rig.post([hdr, ...pieces, { address: rig.take(24), length: 24, writable: true }]));
    }
    device.notify(1);
    // Until the copy-up is done, nothing is answered; the guest may reuse nothing meanwhile, but
    // scribbling over the data now shows the writes use what was there when they were handed in.
    assert.deepEqual(rig.queue.takeUsed(), []);
    memory.fill(DATA_START, 64 * 1024, 0x55);
    let used = rig.queue.takeUsed();
    for (let i = 0; i < 200 && used.length < 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      used.push(...rig.queue.takeUsed());
    }
    assert.deepEqual(used.map((u) => [u.id, u.length]).sort(), heads.map((h) => [h, 24]).sort());
    const expected = Buffer.from(original);
    pattern(3000, 1).copy(expected, 10);
    pattern(3000, 2).copy(expected, 20_000);
    assert.ok(readFileSync(join(dir, 'upper', 'big')).equals(expected), 'both writes landed on the copied-up file');
    assert.ok(readFileSync(join(dir, 'lower', 'big')).equals(original), 'the lower layer is untouched');
    assert.equal(device.stats.zeroCopyWrites, 2);
    assert.equal(device.stats.gathered, 2, 'each waiting WRITE was copied before the handler returned');
  } finally {
    tearDown(device, handler, union, regions, dir);
  }
});
