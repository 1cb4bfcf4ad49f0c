// JIT warm-up of the virtio-fs request path, run by a queue thread while its front end is still
// booting the guest. Node compiles a function to optimised code only after it has run for a
// while; until then a request costs several times more. Measured under QEMU TCG
// (bench:virtiofs, with a temporary per-1,000-requests counter of the queue thread's busy time):
// the first ~3,000 requests of a fresh server took 70-110 us each against ~25 us later, and a
// booting guest sends about that many. So the thread serves synthetic requests first: two more
// FsDevices, built by the same code as the real one, each over a union on a scratch directory of
// its own, driven through split rings in memfds of their own (mapped like guest RAM, in several
// regions as a front end sends them, so the zero-copy paths and region lookups run too). The
// real device, its union and its guest are never touched; the code and its type feedback are
// shared.
//
// The mix is what a Linux guest sends for everyday work: negative and positive LOOKUPs, CREATE,
// GETXATTR of security.capability before the first write, WRITE and READ with their data in
// separate descriptors (as the virtio-fs driver lays them out), GETATTR, SETATTR, OPEN (ENOSYS
// in no-open mode), RELEASE, FLUSH, directory listing, MKDIR/RMDIR, RENAME, SYMLINK/READLINK,
// STATFS, UNLINK and FORGET on the hiprio ring.
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { GuestAddress } from '../../../memory/address.js';
import type { GuestMemory } from '../../../memory/guest-memory.js';
import { createMemfdMemory, memoryFromDescriptors, releaseRegions } from '../../../memory/memfd-memory.js';
import { IN_HEADER_SIZE, OUT_HEADER_SIZE, Opcode } from '../../../fs/fuse-abi.js';
import type { FsDevice } from './fs-device.js';
import { SplitRingDriver, type ChainBuffer } from '../../queue/split-ring-driver.js';
import { VIRTIO_F_RING_PACKED } from '../../queue/features.js';

export interface WarmUpOptions {
  /** Where the scratch directory is made (a tmpfs such as /dev/shm keeps the disk out of it). */
  readonly scratchParent: string;
  /** Stop after this many rounds of the mix (~16 requests each)... */
  readonly rounds: number;
  /** ...or after this long (ms)... */
  readonly maxMs: number;
  /** ...or as soon as this returns true (checked between rounds: the real guest is starting). */
  readonly shouldStop?: () => boolean;
}

export interface WarmUpResult {
  readonly rounds: number;
  readonly requests: number;
  /** Replies whose error was not the one the mix expects (a broken warm-up warms nothing), and
   *  the first of them. */
  readonly unexpected: number;
  readonly firstUnexpected: string;
  readonly ms: number;
}

/** Builds the FsDevice to warm up, over a union of `directory` (writable) alone. */
export type WarmUpDeviceFactory = (directory: string) => { readonly device: FsDevice; close(): void };

const RING_SIZE = 64;
/** Guest RAM as a front end describes it: more than one region (QEMU's pc machine: below 640 KiB
 *  and from 768 KiB up), here the hiprio ring and its buffers in the first, the request ring in
 *  the second and its buffers in the third, so region lookups miss their cache as real ones do.
 *  Above 4 GiB: guest addresses there are not small integers to V8, as in any guest of more than
 *  1 GiB. Warmed on one region at small addresses, the compiled code was thrown away at the first
 *  real request (--trace-deopt: "Insufficient type feedback" in the region lookup). */
const MEMORY_START = 2 ** 32;
const REGIONS = [
  { start: MEMORY_START, size: 1 << 20 },
  { start: MEMORY_START + (2 << 20), size: 1 << 20 },
  { start: MEMORY_START + (4 << 20), size: 4 << 20 },
] as const;
/** Two devices, rounds alternating between them: a call site that saw one closure or one object
 *  is compiled for that one and thrown away when the real device's arrives ("wrong call
 *  target"); having seen two, it is compiled for any. */
const DEVICES = 2;
const DATA_BYTES = 4096;
const ROOT = 1n;
const ENODATA = -61;
const ENOSYS = -38;

const O_WRONLY = 0o1;
const O_RDONLY = 0;
const O_CREAT = 0o100;
const O_TRUNC = 0o1000;
const O_DIRECTORY = 0o200000;
const FATTR_MODE = 1 << 0;

/** Serves the warm-up mix through devices built by `build`; never throws. */
export function warmUpFs(build: WarmUpDeviceFactory, options: WarmUpOptions): WarmUpResult {
  const started = performance.now();
  const scratches: string[] = [];
  const built: Array<ReturnType<WarmUpDeviceFactory>> = [];
  const mapped: Array<ReturnType<typeof createMemfdMemory>> = [];
  const rigs: Rig[] = [];
  const tally = (): { requests: number; unexpected: number; firstUnexpected: string } => ({
    requests: rigs.reduce((sum, r) => sum + r.requests, 0),
    unexpected: rigs.reduce((sum, r) => sum + r.unexpected, 0),
    firstUnexpected: rigs.find((r) => r.unexpected > 0)?.firstUnexpected ?? '',
  });
  try {
    for (let i = 0; i < DEVICES; i++) {
      const scratch = mkdtempSync(join(options.scratchParent, 'novm-fs-warm-up-'));
      scratches.push(scratch);
      const device = build(scratch);
      built.push(device);
      const memory = createMemfdMemory(REGIONS.map(({ start, size }) => ({ start: start as GuestAddress, size })));
      mapped.push(memory);
      // Viewed the way a queue thread views the front end's RAM (plain descriptors), so the
      // objects have the shapes the real ones will have.
      rigs.push(new Rig(device.device, memoryFromDescriptors(memory.regions.map(({ start, size, hostAddress }) => ({ start, size, fd: -1, fdOffset: 0, hostAddress })))));
    }
    let rounds = 0;
    while (rounds < options.rounds && performance.now() - started < options.maxMs && options.shouldStop?.() !== true) {
      rigs[rounds % DEVICES]!.round(rounds++ >> 1);
    }
    return { rounds, ...tally(), ms: performance.now() - started };
  } catch (error) {
    const message = `threw ${error instanceof Error ? error.message : String(error)}`;
    const t = tally();
    return { rounds: 0, requests: t.requests, unexpected: t.unexpected + 1, firstUnexpected: t.firstUnexpected || message, ms: performance.now() - started };
  } finally {
    try {
      for (const b of built) {
        b.device.reset();
        b.close();
      }
    } finally {
      for (const m of mapped) releaseRegions(m.regions);
      for (const scratch of scratches) rmSync(scratch, { recursive: true, force: true });
    }
  }
}

/** The fake guest: a hiprio and a request ring in the memfd, and the FUSE encoding of the mix. */
class Rig {
  requests = 0;
  unexpected = 0;
  firstUnexpected = '';
  private readonly hiprio: SplitRingDriver;
  private readonly queue: SplitRingDriver;
  private unique = 1n;
  private readonly header = new Uint8Array(IN_HEADER_SIZE);
  private readonly headerView = new DataView(this.header.buffer);
  private readonly data = new Uint8Array(DATA_BYTES).fill(0x78);
  private readonly encoder = new TextEncoder();

  constructor(private readonly device: FsDevice, private readonly memory: GuestMemory) {
    const [low, middle, high] = REGIONS;
    const ringBytes = SplitRingDriver.bytesFor(RING_SIZE);
    this.hiprio = new SplitRingDriver(memory, RING_SIZE, low.start, low.start + ringBytes, low.start + low.size);
    this.queue = new SplitRingDriver(memory, RING_SIZE, middle.start, high.start, high.start + high.size);
    let broken = false;
    device.activate({
      memory,
      // What a Linux driver negotiates with QEMU: everything offered but packed rings.
      features: device.deviceFeatures & ~VIRTIO_F_RING_PACKED,
      queues: [this.hiprio.config, this.queue.config],
      notifyQueue: () => {},
      notifyConfig: () => {},
      needsReset: () => {
        broken = true;
      },
    });
    if (broken || !device.isActive) throw new Error('warm-up device did not activate');
    // FUSE 7.31, the oldest minor the server accepts, with the flags Linux 6.1 asks for.
    const init = new Uint8Array(64);
    const v = new DataView(init.buffer);
    v.setUint32(0, 7, true);
    v.setUint32(4, 31, true);
    v.setUint32(8, 128 << 10, true);
    v.setUint32(12, 0x3fff_ffff, true);
    this.call(Opcode.INIT, 0n, [init], 0, 64);
  }

  /** One pass of the mix on names of its own. */
  round(n: number): void {
    const name = `f${n}`;
    // A miss: answered as a negative entry (node 0) the kernel may cache.
    this.call(Opcode.LOOKUP, ROOT, [this.name(name)], 0, 128);
    this.call(Opcode.GETATTR, ROOT, [new Uint8Array(16)], 0, 104);
    const created = this.call(Opcode.CREATE, ROOT, [u32s(O_WRONLY | O_CREAT | O_TRUNC, 0o100644, 0o022, 0), this.name(name)], 0, 128 + 16);
    const node = created?.getBigUint64(0, true) ?? 0n;
    const fh = created?.getBigUint64(128, true) ?? 0n;
    if (node === 0n) return;
    this.call(Opcode.GETXATTR, node, [u32s(0, 0), this.name('security.capability')], ENODATA, 8);
    this.call(Opcode.WRITE, node, [this.ioIn(fh, DATA_BYTES, 0)], 0, 8, this.data);
    this.call(Opcode.FLUSH, node, [this.releaseIn(fh)], ENOSYS, 0);
    this.call(Opcode.RELEASE, node, [this.releaseIn(fh)], 0, 0);
    this.call(Opcode.LOOKUP, ROOT, [this.name(name)], 0, 128);
    this.call(Opcode.GETATTR, node, [new Uint8Array(16)], 0, 104);
    this.call(Opcode.OPEN, node, [u32s(O_RDONLY, 0)], ENOSYS, 16);
    this.call(Opcode.READ, node, [this.ioIn(0n, DATA_BYTES, 0)], 0, 0, undefined, DATA_BYTES);
    this.call(Opcode.SETATTR, node, [this.setMode(0o100600)], 0, 104);
    if (n % 8 === 0) this.directoryWork(n);
    this.call(Opcode.RENAME, ROOT, [u64s(ROOT), this.name(name), this.name(`r${n}`)], 0, 0);
    this.call(Opcode.UNLINK, ROOT, [this.name(`r${n}`)], 0, 0);
    this.forget(node, 2n);
  }

  private directoryWork(n: number): void {
    const dir = this.call(Opcode.MKDIR, ROOT, [u32s(0o40755, 0o022), this.name(`d${n}`)], 0, 128);
    const link = this.call(Opcode.SYMLINK, ROOT, [this.name(`s${n}`), this.name('target')], 0, 128);
    const linkNode = link?.getBigUint64(0, true) ?? 0n;
    if (linkNode !== 0n) this.call(Opcode.READLINK, linkNode, [], 0, 0, undefined, 256);
    const opened = this.call(Opcode.OPENDIR, ROOT, [u32s(O_RDONLY | O_DIRECTORY, 0)], 0, 16);
    const dh = opened?.getBigUint64(0, true) ?? 0n;
    this.call(Opcode.READDIRPLUS, ROOT, [this.ioIn(dh, DATA_BYTES, 0)], 0, DATA_BYTES);
    this.call(Opcode.RELEASEDIR, ROOT, [this.releaseIn(dh)], 0, 0);
    this.call(Opcode.STATFS, ROOT, [], 0, 80);
    this.call(Opcode.UNLINK, ROOT, [this.name(`s${n}`)], 0, 0);
    if (linkNode !== 0n) this.forget(linkNode, 1n);
    this.call(Opcode.RMDIR, ROOT, [this.name(`d${n}`)], 0, 0);
    const dirNode = dir?.getBigUint64(0, true) ?? 0n;
    if (dirNode !== 0n) this.forget(dirNode, 1n);
  }

  /**
   * Posts one request as the Linux driver lays it out (the in header, its arguments, then the
   * data pages readable; the out header, its arguments, then the data pages writable), serves
   * it, and returns the reply's arguments if its error was `expect` (else counts it).
   */
  private call(opcode: number, node: bigint, args: readonly Uint8Array[], expect: number, outBytes: number, inData?: Uint8Array, outData = 0): DataView | undefined {
    const argBytes = args.reduce((sum, a) => sum + a.length, 0);
    const inArgs = new Uint8Array(argBytes);
    let at = 0;
    for (const a of args) {
      inArgs.set(a, at);
      at += a.length;
    }
    const total = IN_HEADER_SIZE + argBytes + (inData?.length ?? 0);
    this.headerView.setUint32(0, total, true);
    this.headerView.setUint32(4, opcode, true);
    this.headerView.setBigUint64(8, this.unique++, true);
    this.headerView.setBigUint64(16, node, true);
    const buffers: ChainBuffer[] = [{ length: IN_HEADER_SIZE, writable: false, data: this.header }];
    if (argBytes > 0) buffers.push({ length: argBytes, writable: false, data: inArgs });
    if (inData !== undefined) buffers.push({ length: inData.length, writable: false, data: inData });
    const outAt = buffers.length;
    buffers.push({ length: OUT_HEADER_SIZE, writable: true });
    if (outBytes > 0) buffers.push({ length: outBytes, writable: true });
    if (outData > 0) buffers.push({ length: outData, writable: true });
    // Through an indirect table, as Linux posts every request of more than one buffer.
    const { addresses } = this.queue.post(buffers, { indirect: true });
    // Every other request is found as a busy-polling queue thread finds one (the ring watched in
    // memory, then served), the rest by kick: both ways in are compiled before the guest comes
    // (--trace-opt showed hasAvailable, pollQueues and stopPolling compiled during its first loop).
    if (this.requests++ % 2 === 0) this.device.notify(1);
    else {
      this.device.startPolling();
      if (this.device.hasAvailable()) this.device.pollQueues();
      this.device.stopPolling();
    }
    const used = this.queue.takeUsed();
    const error = used.length === 1 ? this.memory.readU32LE(addresses[outAt]! + 4) | 0 : 1;
    if (error !== expect) {
      if (this.unexpected++ === 0) this.firstUnexpected = `opcode ${opcode}: error ${error}, expected ${expect}`;
      return undefined;
    }
    if (outBytes === 0) return undefined;
    const reply = this.memory.read(addresses[outAt + 1]!, outBytes);
    return new DataView(reply.buffer, reply.byteOffset, reply.byteLength);
  }

  /** FORGET on the hiprio ring (no reply). */
  private forget(node: bigint, lookups: bigint): void {
    this.headerView.setUint32(0, IN_HEADER_SIZE + 8, true);
    this.headerView.setUint32(4, Opcode.FORGET, true);
    this.headerView.setBigUint64(8, this.unique++, true);
    this.headerView.setBigUint64(16, node, true);
    this.hiprio.post([{ length: IN_HEADER_SIZE, writable: false, data: this.header }, { length: 8, writable: false, data: u64s(lookups) }], { indirect: true });
    this.requests++;
    this.device.notify(0);
    this.hiprio.takeUsed();
  }

  private name(s: string): Uint8Array {
    const bytes = this.encoder.encode(s);
    const out = new Uint8Array(bytes.length + 1);
    out.set(bytes);
    return out;
  }

  /** fuse_read_in / fuse_write_in: fh, offset, size, flags, lock owner, flags, padding. */
  private ioIn(fh: bigint, size: number, offset: number): Uint8Array {
    const b = new Uint8Array(40);
    const v = new DataView(b.buffer);
    v.setBigUint64(0, fh, true);
    v.setBigUint64(8, BigInt(offset), true);
    v.setUint32(16, size, true);
    return b;
  }

  /** fuse_release_in / fuse_flush_in: fh first, the rest zero. */
  private releaseIn(fh: bigint): Uint8Array {
    return u64s(fh, 0n, 0n);
  }

  /** fuse_setattr_in changing the mode. */
  private setMode(mode: number): Uint8Array {
    const b = new Uint8Array(88);
    const v = new DataView(b.buffer);
    v.setUint32(0, FATTR_MODE, true);
    v.setUint32(68, mode, true);
    return b;
  }
}

function u32s(...values: number[]): Uint8Array {
  const b = new Uint8Array(4 * values.length);
  const v = new DataView(b.buffer);
  values.forEach((x, i) => v.setUint32(4 * i, x >>> 0, true));
  return b;
}

function u64s(...values: bigint[]): Uint8Array {
  const b = new Uint8Array(8 * values.length);
  const v = new DataView(b.buffer);
  values.forEach((x, i) => v.setBigUint64(8 * i, x, true));
  return b;
}
