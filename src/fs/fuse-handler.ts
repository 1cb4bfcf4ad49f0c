// The FUSE request handler: request bytes in, reply bytes out, with no knowledge of how requests
// arrive (/dev/fuse here, virtio-fs descriptor chains elsewhere).
//
//   handler.handle(request, done)   done(reply) is called exactly once, synchronously for metadata
//                                   operations and later for data I/O (READ, WRITE, FSYNC run in the
//                                   libuv thread pool so a slow one does not stall the others);
//                                   done(null) means "no reply" (FORGET, BATCH_FORGET, INTERRUPT).
//                                   The reply bytes are only valid during the callback.
//   handler.handle(request, done, payload)
//                                   a READ or WRITE whose data stays in the transport's memory
//                                   (virtio-fs on host-mapped guest RAM): moved with preadv/pwritev
//                                   through the payload's iovecs, see data-payload.ts.
//   handler.forget(request)         the FORGET/BATCH_FORGET fast path (virtio-fs hiprio queue):
//                                   no reply, no allocation.
//
// Every field the client sends is bounds-checked against the request length; a malformed request
// gets an error reply (EINVAL/EPROTO/ESTALE/EBADF), never an exception out of handle().
import {
  closeFd, fallocate, fstatfs, lseek, nativeBuffer, O_ACCMODE, S_IFREG, preadv2, pwrite, pwritev, RWF_NOWAIT, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, S_IFDIR, SEEK_DATA, SEEK_HOLE,
  STATFS_SIZE, StatfsOffset, StatOffset, syncfs,
} from '../native/fs-calls.js';
import { Errno, errnoOf, FsError, fsError, sys } from './errors.js';
import {
  ATTR_OUT_SIZE, DIRENT_HEADER_SIZE, ENTRY_OUT_SIZE, FATTR_ATIME, FATTR_ATIME_NOW, FATTR_FH, FATTR_GID, FATTR_MODE,
  FATTR_MTIME, FATTR_MTIME_NOW, FATTR_SIZE, FATTR_UID, FOPEN_CACHE_DIR, FOPEN_KEEP_CACHE, FUSE_ASYNC_DIO, FUSE_ASYNC_READ, FATTR_KILL_SUIDGID, FUSE_HANDLE_KILLPRIV_V2, FUSE_OPEN_KILL_SUIDGID, FUSE_WRITE_KILL_SUIDGID,
  FUSE_ATOMIC_O_TRUNC, FUSE_BIG_WRITES, FUSE_CACHE_SYMLINKS, FUSE_DO_READDIRPLUS, FUSE_FSYNC_FDATASYNC,
  FUSE_KERNEL_MINOR_VERSION, FUSE_KERNEL_VERSION, FUSE_MAX_PAGES, FUSE_MIN_MINOR_VERSION, FUSE_PARALLEL_DIROPS,
  FUSE_READDIRPLUS_AUTO, FUSE_SETXATTR_EXT, FUSE_WRITEBACK_CACHE, IN_HEADER_SIZE, INIT_OUT_SIZE, MAX_PAGES, MAX_WRITE,
  FOPEN_PASSTHROUGH, FUSE_INIT_EXT, FUSE2_PASSTHROUGH, INIT_OUT_MAX_STACK_DEPTH,
  OPEN_OUT_SIZE, Opcode, OUT_HEADER_SIZE, REQUEST_BUFFER_SIZE, STATFS_OUT_SIZE, WRITE_IN_SIZE,
} from './fuse-abi.js';
import { type DataIo, LibuvDataIo, type Unique } from './data-io.js';
import type { DataPayload } from './data-payload.js';
import type { MetaIo } from './meta-io.js';
import type { HostStat } from './host-stat.js';
import { IdTable } from './id-table.js';
import { type BackingFiles, PassthroughTable } from './passthrough.js';
import { type DirEntry, type FsNode, type SetAttr, UnionFs } from './union.js';

export type ReplyCallback = (reply: Uint8Array | null) => void;

interface OpenFile {
  fd: number;
  node: FsNode;
  entries: DirEntry[] | null;
  index: number;
  generation: number;
  /** The passthrough backing id of this open, 0 when the server serves its data. */
  backingId: number;
}

export interface HandlerOptions {
  /** Seconds the client may cache entries and attributes. */
  readonly cacheTimeoutSeconds?: number;
  /** Log line sink for unexpected (non-errno) failures. */
  readonly log?: (line: string) => void;
  /** Where blocking data operations run (default: libuv's thread pool). */
  readonly dataIo?: DataIo;
  /** Answer OPEN with ENOSYS so that the kernel stops sending OPEN/RELEASE (default true). */
  readonly noOpen?: boolean;
  /** Where the blocking system calls of CREATE and MKDIR and the data of large copy-ups go
   *  (default: inline on the handler's thread). */
  readonly metaIo?: MetaIo;
  /** With a metaIo, copy-ups of files larger than this go to it (default 1 MiB). */
  readonly copyUpInlineMax?: number;
  /** Background requests (read-ahead, writeback) the kernel may have in flight (default 64). A
   *  transport with a fixed number of request buffers keeps this below it, so that buffers are
   *  always left for other requests while writeback saturates the I/O threads. */
  readonly maxBackground?: number;
  /** Offer FUSE_WRITEBACK_CACHE (default true). Off, every write(2) is one WRITE request: better
   *  where the client's own page-cache work is what costs (a software-emulated guest). */
  readonly writebackCache?: boolean;
  /** Backing-file registration of the transport (/dev/fuse). With it, and a kernel that offers
   *  FUSE_PASSTHROUGH, opens of files no copy-up can replace are passthrough: their reads, writes
   *  and mmap go to the host file without a request. The connection then answers OPEN (instead of
   *  "no open" mode) and has no writeback cache, which the kernel does not combine with it. */
  readonly backingFiles?: BackingFiles;
}

/** Writes up to this size are done inline: a buffered write of this size costs microseconds. */
const INLINE_WRITE_MAX = 128 * 1024;

export interface HandlerMetrics {
  requests: number;
  errors: number;
  malformed: number;
  unexpected: number;
  openFiles: number;
  /** Host files registered as passthrough backing files now. */
  backingFiles: number;
}

const SYNTHETIC_INO_BASE = 0xffff_0000;
/** Opcodes that may copy up the regular file named by their node id. */
const MAY_COPY_UP = opcodeSet(Opcode.WRITE, Opcode.SETATTR, Opcode.OPEN, Opcode.SETXATTR, Opcode.REMOVEXATTR, Opcode.FALLOCATE);
/** Opcodes that only read the node named by their node id. */
const READS = opcodeSet(Opcode.GETATTR, Opcode.READ, Opcode.GETXATTR, Opcode.LISTXATTR, Opcode.LSEEK, Opcode.READLINK, Opcode.STATFS, Opcode.FLUSH);
/** Opcodes that change the entries of the directory named by their node id. */
const NAMESPACE_OPS = opcodeSet(Opcode.UNLINK, Opcode.RMDIR, Opcode.RENAME, Opcode.RENAME2, Opcode.LINK, Opcode.CREATE, Opcode.MKDIR, Opcode.MKNOD, Opcode.SYMLINK, Opcode.TMPFILE);
function opcodeSet(...ops: number[]): Uint8Array {
  const set = new Uint8Array(64);
  for (const op of ops) set[op] = 1;
  return set;
}
/** Copy-ups of files up to this size run inline (default): they take well under a millisecond. */
const COPY_UP_INLINE_MAX = 1 << 20;
/** fuse_attr u64 fields copied from struct stat: [offset in fuse_attr, offset in stat]. */
const ATTR_COPIES: ReadonlyArray<readonly [number, number]> = [[8, StatOffset.size], [16, StatOffset.blocks], [24, StatOffset.atime], [32, StatOffset.mtime], [40, StatOffset.ctime]];

export class FuseHandler {
  readonly metrics: HandlerMetrics = { requests: 0, errors: 0, malformed: 0, unexpected: 0, openFiles: 0, backingFiles: 0 };
  /** Requests and nanoseconds spent per opcode (NOVM_FS_PROFILE=1), for finding where time goes. */
  readonly profile = process.env['NOVM_FS_PROFILE'] === '1' ? { count: new Float64Array(64), nanos: new Float64Array(64) } : null;
  private readonly files = new IdTable<OpenFile>(1);
  private readonly native = nativeBuffer(REQUEST_BUFFER_SIZE);
  private readonly reply = this.native.buffer;
  private readonly out = new DataView(this.reply.buffer, this.reply.byteOffset, this.reply.byteLength);
  private readonly views = new WeakMap<ArrayBufferLike, { view: DataView; buffer: Buffer }>();
  private readonly replyData = this.reply.subarray(OUT_HEADER_SIZE);
  /** One iovec: the reply's data area (after the out header) and a length set per READ. */
  private readonly iov = BigUint64Array.of(this.native.address + BigInt(OUT_HEADER_SIZE), 0n);
  private readonly unique = { low: 0, high: 0 };
  private readonly deferredClose: number[] = [];
  private readonly dataIo: DataIo;
  private readonly statfsBuf = new Uint8Array(STATFS_SIZE);
  private readonly statfsView = new DataView(this.statfsBuf.buffer);
  private readonly timeout: number;
  private readonly log: (line: string) => void;
  private initialized = false;
  private minor = 0;
  private writeback = false;
  private setxattrExt = false;
  // Per-request decoding state (one request is decoded at a time on this thread).
  private dv!: DataView;
  private buf!: Buffer;
  private base = 0;
  private end = 0;

  constructor(readonly union: UnionFs, options: HandlerOptions = {}) {
    this.timeout = options.cacheTimeoutSeconds ?? 1;
    this.log = options.log ?? ((line) => process.stderr.write(`novm fs: ${line}\n`));
    this.dataIo = options.dataIo ?? new LibuvDataIo();
    this.metaIo = options.metaIo;
    this.copyUpInlineMax = options.copyUpInlineMax ?? COPY_UP_INLINE_MAX;
    this.noOpenWanted = options.noOpen ?? true;
    this.noOpen = this.noOpenWanted;
    this.backingFiles = options.backingFiles;
    this.maxBackground = Math.max(1, Math.min(options.maxBackground ?? 64, 0xffff));
    this.offerWriteback = options.writebackCache ?? true;
    // Node I/O fds retired by the engine (copy-up, forget) may still be in use by in-flight I/O.
    this.union.retireFd = (fd) => {
      if (this.dataIo.busy(fd)) this.deferredClose.push(fd);
      else closeFd(fd);
    };
  }
  private readonly noOpenWanted: boolean;
  /** "No open" mode, decided at INIT: off when passthrough was negotiated. */
  private noOpen: boolean;
  private readonly backingFiles: BackingFiles | undefined;
  /** Set at INIT when the kernel took FUSE_PASSTHROUGH. */
  private passthrough: PassthroughTable | null = null;
  private readonly maxBackground: number;
  private readonly offerWriteback: boolean;
  private readonly metaIo: MetaIo | undefined;
  private readonly copyUpInlineMax: number;
  /** Nodes whose copy-up runs elsewhere, with the requests waiting for it. */
  private readonly copying = new Map<FsNode, Array<() => void>>();

  get negotiatedMinor(): number {
    return this.minor;
  }

  /** True for requests that take the FORGET fast path (no reply). */
  static isForget(request: Uint8Array): boolean {
    if (request.length < IN_HEADER_SIZE) return false;
    const op = request[4]! | (request[5]! << 8) | (request[6]! << 16) | (request[7]! << 24);
    return op === Opcode.FORGET || op === Opcode.BATCH_FORGET;
  }

  /** FORGET / BATCH_FORGET: drop client lookups. Never replies; unknown ids are ignored. */
  forget(request: Uint8Array): void {
    if (!this.decode(request)) return;
    const op = this.dv.getUint32(this.base + 4, true);
    if (op === Opcode.FORGET) {
      if (this.end - this.base < IN_HEADER_SIZE + 8) return;
      this.forgetOne(this.dv.getUint32(this.base + 16, true), this.dv.getUint32(this.base + 20, true), this.count64(IN_HEADER_SIZE));
    } else if (op === Opcode.BATCH_FORGET) {
      if (this.end - this.base < IN_HEADER_SIZE + 8) return;
      const count = this.dv.getUint32(this.base + IN_HEADER_SIZE, true);
      const fit = Math.floor((this.end - this.base - IN_HEADER_SIZE - 8) / 16);
      const n = Math.min(count, fit);
      for (let i = 0; i < n; i++) {
        const o = IN_HEADER_SIZE + 8 + i * 16;
        this.forgetOne(this.dv.getUint32(this.base + o, true), this.dv.getUint32(this.base + o + 4, true), this.count64(o + 8));
      }
    }
  }

  private forgetOne(low: number, high: number, count: number): void {
    const node = this.union.nodes.get(low, high);
    if (node) this.union.forget(node, count);
  }

  handle(request: Uint8Array, done: ReplyCallback, payload?: DataPayload): void {
    this.metrics.requests++;
    if (!this.decode(request, payload)) {
      this.metrics.malformed++;
      // Too short to carry a unique id: nothing can be answered.
      if (request.length < 16) return done(null);
      return done(this.errorReply(request, Errno.EINVAL));
    }
    const op = this.dv.getUint32(this.base + 4, true);
    if (op === Opcode.FORGET || op === Opcode.BATCH_FORGET) {
      this.forget(request);
      return done(null);
    }
    if (op === Opcode.INTERRUPT) return done(null);
    if (this.deferredClose.length > 0) this.closeDeferred();
    const t0 = this.profile ? process.hrtime.bigint() : 0n;
    try {
      if (op !== Opcode.INIT && !this.initialized) throw fsError(Errno.EIO);
      if (this.metaIo && (this.copying.size > 0 || MAY_COPY_UP[op] === 1) && this.waitsForCopyUp(op, request, done, payload)) return;
      this.dispatch(op, request, done, payload);
      if (this.profile && op < 64) {
        this.profile.count[op]!++;
        this.profile.nanos[op]! += Number(process.hrtime.bigint() - t0);
      }
    } catch (error) {
      if (!(error instanceof FsError) && !(error instanceof RangeError)) {
        const errno = errnoOf(error);
        if (errno === Errno.EIO) {
          this.metrics.unexpected++;
          this.log(`opcode ${op}: ${error instanceof Error ? error.message : String(error)}`);
        }
      }
      done(this.errorReply(request, error instanceof RangeError ? Errno.EINVAL : errnoOf(error)));
    }
  }

  // ---- decoding helpers -------------------------------------------------------------------------

  /** Points the decoding state at `request`; a WRITE's payload counts towards its length (the
   *  request then holds its headers only, and nothing past them is read from it). */
  private decode(request: Uint8Array, payload?: DataPayload): boolean {
    let cached = this.views.get(request.buffer);
    if (!cached) {
      cached = { view: new DataView(request.buffer), buffer: Buffer.from(request.buffer) };
      this.views.set(request.buffer, cached);
    }
    this.dv = cached.view;
    this.buf = cached.buffer;
    this.base = request.byteOffset;
    if (request.length < IN_HEADER_SIZE) return false;
    const len = this.dv.getUint32(this.base, true);
    const extra = payload !== undefined && this.dv.getUint32(this.base + 4, true) === Opcode.WRITE ? payload.bytes : 0;
    if (len < IN_HEADER_SIZE || len > request.length + extra) return false;
    this.end = this.base + len;
    return true;
  }

  /** A u64 count (FORGET nlookup), saturated: the FORGET path never fails. Bounds checked by the caller. */
  private count64(o: number): number {
    const hi = this.dv.getUint32(this.base + o + 4, true);
    return hi >= 0x20_0000 ? Number.MAX_SAFE_INTEGER : this.dv.getUint32(this.base + o, true) + hi * 0x1_0000_0000;
  }

  /** u64 at request offset `o` as a number; beyond 2^53 is refused. */
  private u64(o: number): number {
    this.need(o + 8);
    const hi = this.dv.getUint32(this.base + o + 4, true);
    if (hi >= 0x20_0000) throw fsError(Errno.EINVAL);
    return this.dv.getUint32(this.base + o, true) + hi * 0x1_0000_0000;
  }
  /** u64 at request offset `o`, as a bigint when beyond 2^53 (offsets handed to the host as int64). */
  private u64Wide(o: number): number | bigint {
    this.need(o + 8);
    const hi = this.dv.getUint32(this.base + o + 4, true);
    if (hi < 0x20_0000) return this.dv.getUint32(this.base + o, true) + hi * 0x1_0000_0000;
    return this.dv.getBigInt64(this.base + o, true);
  }
  private u32(o: number): number {
    this.need(o + 4);
    return this.dv.getUint32(this.base + o, true);
  }
  private need(o: number): void {
    if (this.base + o > this.end) throw fsError(Errno.EINVAL);
  }
  /** A NUL-terminated name at request offset `o`; returns [name, offset after the NUL]. */
  private cstring(o: number): [string, number] {
    const start = this.base + o;
    if (start >= this.end) throw fsError(Errno.EINVAL);
    const nul = this.buf.indexOf(0, start);
    if (nul < 0 || nul >= this.end) throw fsError(Errno.EINVAL);
    return [this.buf.toString('latin1', start, nul), nul + 1 - this.base];
  }
  private node(o = 16): FsNode {
    return this.union.node(this.dv.getUint32(this.base + o, true), this.dv.getUint32(this.base + o + 4, true));
  }
  private file(o = IN_HEADER_SIZE): OpenFile {
    this.need(o + 8);
    const f = this.files.get(this.dv.getUint32(this.base + o, true), this.dv.getUint32(this.base + o + 4, true));
    if (!f) throw fsError(Errno.EBADF);
    return f;
  }
  /** The host fd for data I/O: the handle's, or with fh 0 (the client opened the file without an
   *  OPEN request, see OPEN below) the node's own I/O fd, writable when `write` (copying up). */
  private ioFile(write: boolean, o = IN_HEADER_SIZE): { fd: number; node: FsNode } {
    this.need(o + 8);
    if (this.noOpen && this.dv.getUint32(this.base + o, true) === 0 && this.dv.getUint32(this.base + o + 4, true) === 0) {
      const node = this.node();
      return { fd: this.union.ioFd(node, write), node };
    }
    const f = this.file(o);
    if (f.backingId > 0) return { fd: this.union.ioFd(f.node, write), node: f.node };
    return f;
  }

  private get uid(): number {
    return this.dv.getUint32(this.base + 24, true);
  }
  private get gid(): number {
    return this.dv.getUint32(this.base + 28, true);
  }

  // ---- reply helpers ----------------------------------------------------------------------------

  private errorReply(request: Uint8Array, errno: number): Uint8Array {
    // decode() has pointed this.dv at the request; callers only get here with >= 16 bytes.
    const long = request.length >= 16;
    return this.errorReplyFor(errno, long ? this.dv.getUint32(this.base + 8, true) : 0, long ? this.dv.getUint32(this.base + 12, true) : 0);
  }

  /** An error reply to the request with this unique id (also for requests finished later). */
  private errorReplyFor(errno: number, uniqueLow: number, uniqueHigh: number): Uint8Array {
    this.metrics.errors++;
    return this.header(OUT_HEADER_SIZE, -errno, uniqueLow, uniqueHigh);
  }

  /** Fills the out header for a successful reply of `bodySize` bytes in this.reply. */
  private ok(bodySize: number): Uint8Array {
    return this.okFor(bodySize, this.dv.getUint32(this.base + 8, true), this.dv.getUint32(this.base + 12, true));
  }

  /** ok() for a request finished after others were decoded (its unique id was kept). */
  private okFor(bodySize: number, uniqueLow: number, uniqueHigh: number): Uint8Array {
    return this.header(OUT_HEADER_SIZE + bodySize, 0, uniqueLow, uniqueHigh);
  }

  /** fuse_out_header {len, error, unique} in this.reply; returns the reply's `total` bytes. */
  private header(total: number, error: number, uniqueLow: number, uniqueHigh: number): Uint8Array {
    const out = this.out;
    out.setUint32(0, total, true);
    out.setInt32(4, error, true);
    out.setUint32(8, uniqueLow, true);
    out.setUint32(12, uniqueHigh, true);
    return this.reply.subarray(0, total);
  }

  private setU64(out: DataView, o: number, value: number): void {
    out.setUint32(o, value >>> 0, true);
    out.setUint32(o + 4, Math.floor(value / 0x1_0000_0000), true);
  }

  /** fuse_attr at `o` from a host stat (or a synthetic directory when st is null). */
  private writeAttr(out: DataView, o: number, node: FsNode, st: HostStat | null): void {
    if (!st) {
      this.setU64(out, o, SYNTHETIC_INO_BASE + (node.trie?.id ?? 0));
      for (let i = 8; i < 48; i += 4) out.setUint32(o + i, 0, true);
      out.setUint32(o + 48, 0, true);
      out.setUint32(o + 52, 0, true);
      out.setUint32(o + 56, 0, true);
      out.setUint32(o + 60, S_IFDIR | 0o755, true);
      out.setUint32(o + 64, 2, true);
      out.setUint32(o + 68, 0, true);
      out.setUint32(o + 72, 0, true);
      out.setUint32(o + 76, 0, true);
      out.setUint32(o + 80, 4096, true);
      out.setUint32(o + 84, 0, true);
      return;
    }
    const sv = st.view;
    out.setUint32(o, sv.getUint32(StatOffset.ino, true), true);
    out.setUint32(o + 4, sv.getUint32(StatOffset.ino + 4, true), true);
    const dev = this.union.deviceIndex(st.dev);
    if (dev !== 0) out.setUint32(o + 4, out.getUint32(o + 4, true) ^ (dev << 16), true);
    for (const [to, from] of ATTR_COPIES) {
      out.setUint32(o + to, sv.getUint32(from, true), true);
      out.setUint32(o + to + 4, sv.getUint32(from + 4, true), true);
    }
    out.setUint32(o + 48, sv.getUint32(StatOffset.atimeNsec, true), true);
    out.setUint32(o + 52, sv.getUint32(StatOffset.mtimeNsec, true), true);
    out.setUint32(o + 56, sv.getUint32(StatOffset.ctimeNsec, true), true);
    out.setUint32(o + 60, st.mode, true);
    // A merged directory's link count is unknowable cheaply; 1 tells tools not to rely on it.
    out.setUint32(o + 64, node.isDir && node.fds.length > 1 ? 1 : sv.getUint32(StatOffset.nlink, true), true);
    out.setUint32(o + 68, st.uid, true);
    out.setUint32(o + 72, st.gid, true);
    out.setUint32(o + 76, sv.getUint32(StatOffset.rdev, true), true);
    out.setUint32(o + 80, sv.getUint32(StatOffset.blksize, true), true);
    out.setUint32(o + 84, 0, true);
  }

  /** fuse_entry_out for a node just returned by union.lookup() (reuses the lookup's stat). */
  private writeLookedUp(out: DataView, o: number, node: FsNode): void {
    if (this.union.lookupStatValid) this.writeEntry(out, o, node, this.union.lookupStat);
    else this.writeEntry(out, o, node);
  }

  private writeEntry(out: DataView, o: number, node: FsNode, st?: HostStat): void {
    out.setUint32(o, node.index, true);
    out.setUint32(o + 4, node.generation, true);
    out.setUint32(o + 8, node.generation, true);
    out.setUint32(o + 12, 0, true);
    this.setU64(out, o + 16, this.timeout);
    this.setU64(out, o + 24, this.timeout);
    out.setUint32(o + 32, 0, true);
    out.setUint32(o + 36, 0, true);
    this.writeAttr(out, o + 40, node, st ?? this.union.stat(node));
  }

  private entryReply(node: FsNode): Uint8Array {
    this.writeEntry(this.out, OUT_HEADER_SIZE, node);
    return this.ok(ENTRY_OUT_SIZE);
  }

  private attrReply(node: FsNode): Uint8Array {
    const out = this.out;
    this.setU64(out, OUT_HEADER_SIZE, this.timeout);
    out.setUint32(OUT_HEADER_SIZE + 8, 0, true);
    out.setUint32(OUT_HEADER_SIZE + 12, 0, true);
    this.writeAttr(out, OUT_HEADER_SIZE + 16, node, this.union.stat(node));
    return this.ok(ATTR_OUT_SIZE);
  }

  private addFile(fd: number, node: FsNode, entries: DirEntry[] | null, backingId = 0): OpenFile {
    const f: OpenFile = { fd, node, entries, index: 0, generation: 0, backingId };
    const { index, generation } = this.files.add(f);
    f.index = index;
    f.generation = generation;
    // A handle keeps its node alive (the client may forget the node while the file is open).
    node.lookups++;
    this.metrics.openFiles = this.files.size;
    return f;
  }

  private closeDeferred(): void {
    for (let i = this.deferredClose.length - 1; i >= 0; i--) {
      const fd = this.deferredClose[i]!;
      if (!this.dataIo.busy(fd)) {
        closeFd(fd);
        this.deferredClose.splice(i, 1);
      }
    }
  }

  private releaseFile(f: OpenFile): void {
    // A hostile client may release a handle with I/O still in flight: close only when it is done.
    if (f.fd >= 0) {
      if (this.dataIo.busy(f.fd)) this.deferredClose.push(f.fd);
      else closeFd(f.fd);
    }
    if (this.passthrough && f.entries === null && f.node.type === S_IFREG) this.passthrough.release(f.node, f.backingId);
    this.files.remove(f.index);
    this.union.forget(f.node, 1);
    this.metrics.openFiles = this.files.size;
  }

  private writeOpenOut(o: number, f: OpenFile, openFlags: number): void {
    this.out.setUint32(o, f.index, true);
    this.out.setUint32(o + 4, f.generation, true);
    this.out.setUint32(o + 8, f.backingId > 0 ? FOPEN_PASSTHROUGH : openFlags, true);
    this.out.setUint32(o + 12, f.backingId, true);
  }

  /** The passthrough backing id for a new open of regular file `node` (0: this server serves its
   *  data), registering a host fd of the file (`created` if given: a file just created) when the
   *  node has no registration yet. A passthrough handle holds no host fd of its own: the kernel
   *  does its I/O, and the few requests that still name it (FSYNC, FALLOCATE, LSEEK) use the
   *  node's I/O fd. A created fd becomes that I/O fd when the open is passthrough (the FSYNC that
   *  often follows needs no reopen); otherwise it stays the caller's. */
  private passthroughFor(node: FsNode, created = -1): number {
    if (this.passthrough === null) return 0;
    // Without a created fd, one is opened for the registration and closed at once (the kernel
    // keeps its own reference).
    let transient = -1;
    const id = this.passthrough.open(node, () => (created >= 0 ? created : (transient = this.union.open(node, O_RDONLY))));
    if (transient >= 0) closeFd(transient);
    if (id > 0 && created >= 0) this.union.adoptIoFd(node, created);
    this.metrics.backingFiles = this.passthrough.registered;
    return id;
  }

  /** Host open flags for a client open: writes go to a copy, O_WRONLY becomes O_RDWR under the
   *  writeback cache (the kernel reads pages of write-only files), append/direct/sync are the
   *  kernel's business with the writeback cache. */
  private hostOpenFlags(flags: number): number {
    let acc = flags & O_ACCMODE;
    if (this.writeback && acc === O_WRONLY) acc = O_RDWR;
    return acc | (flags & O_TRUNC);
  }

  private uniqueOf(): Unique {
    this.unique.low = this.dv.getUint32(this.base + 8, true);
    this.unique.high = this.dv.getUint32(this.base + 12, true);
    return this.unique;
  }

  /** The reply to CREATE/TMPFILE once the entry is written at OUT_HEADER_SIZE: adds the open. */
  private createdReply(node: FsNode, fd: number, uniqueLow: number, uniqueHigh: number): Uint8Array {
    const o = OUT_HEADER_SIZE + ENTRY_OUT_SIZE;
    if (this.noOpen) {
      // In "no open" mode the kernel never sends RELEASE, not even for created files: the new
      // fd becomes the node's I/O fd and the client gets fh 0.
      this.union.adoptIoFd(node, fd);
      for (let i = 0; i < OPEN_OUT_SIZE; i += 4) this.out.setUint32(o + i, 0, true);
      this.out.setUint32(o + 8, FOPEN_KEEP_CACHE, true);
    } else {
      const backingId = this.passthroughFor(node, fd);
      // A passthrough open made the created fd the node's I/O fd; otherwise the handle owns it.
      this.writeOpenOut(o, this.addFile(backingId > 0 ? -1 : fd, node, null, backingId), FOPEN_KEEP_CACHE);
    }
    return this.okFor(ENTRY_OUT_SIZE + OPEN_OUT_SIZE, uniqueLow, uniqueHigh);
  }

  /** CREATE with the inode made on another thread (MetaIo): checks and the union's preparation
   *  now, the reply when the file exists. Other requests are served meanwhile. */
  private createElsewhere(request: Uint8Array, parent: FsNode, mode: number, done: ReplyCallback): void {
    const [name, after] = this.cstring(IN_HEADER_SIZE + 16);
    const plan = this.union.planCreate(parent, name, this.uid, this.gid);
    const finish = this.afterJob(parent, done, (fd, low, high) => {
      const made = this.union.completeCreate(parent, name, fd);
      this.writeLookedUp(this.out, OUT_HEADER_SIZE, made.node);
      return this.createdReply(made.node, made.fd, low, high);
    });
    this.metaIo!.create(plan.dirFd, request.subarray(IN_HEADER_SIZE + 16, after), mode & 0o7777, plan, finish);
  }

  /**
   * Large copy-ups run elsewhere (MetaIo.copyData) so that they do not stall other requests: a
   * request that would copy up a large lower file starts the copy and is handled again once the
   * file is in the writable layer; until then, requests that change that node and namespace
   * changes in its directory wait for it (in order), while everything else, reads of the node
   * included, goes on. Returns true when the request was taken (it will be answered later).
   */
  private waitsForCopyUp(op: number, request: Uint8Array, done: ReplyCallback, payload?: DataPayload): boolean {
    const node = this.union.nodes.get(this.dv.getUint32(this.base + 16, true), this.dv.getUint32(this.base + 20, true));
    for (const [copied, waiting] of this.copying) {
      if ((node === copied && READS[op] !== 1) || (node === copied.parent && NAMESPACE_OPS[op] === 1) || this.secondNodeIs(op, copied)) {
        const resume = this.metaIo!.park();
        // Handled later: a payload's iovecs would be stale by then, so it waits as a copy.
        const kept = payload === undefined ? request : payload.gather();
        waiting.push(() => resume(() => this.handle(kept, done)));
        return true;
      }
    }
    if (MAY_COPY_UP[op] !== 1 || !node) return false;
    // OPEN copies up only with file handles ("no open" mode answers it with ENOSYS).
    if (op === Opcode.OPEN && (this.noOpen || ((this.u32(IN_HEADER_SIZE) & O_ACCMODE) === O_RDONLY && (this.u32(IN_HEADER_SIZE) & O_TRUNC) === 0))) return false;
    // WRITE with a file handle: its OPEN copied the file up already.
    if (op === Opcode.WRITE && (this.u32(IN_HEADER_SIZE) !== 0 || this.u32(IN_HEADER_SIZE + 4) !== 0)) return false;
    const plan = this.union.planCopyUp(node, this.copyUpInlineMax);
    if (plan === null) return false;
    const kept = payload === undefined ? request : payload.gather();
    const waiting: Array<() => void> = [];
    this.copying.set(node, waiting);
    const low = this.dv.getUint32(this.base + 8, true);
    const high = this.dv.getUint32(this.base + 12, true);
    node.lookups++;
    this.metaIo!.copyData(plan.copy.src, plan.copy.tmp, plan.copy.source.size, (result) => {
      this.copying.delete(node);
      let errno = 0;
      try {
        this.union.completeCopyUp(plan, result);
      } catch (error) {
        errno = errnoOf(error);
      } finally {
        this.union.forget(node, 1);
      }
      if (errno !== 0) done(this.errorReplyFor(errno, low, high));
      else this.handle(kept, done);
      for (const wake of waiting) wake();
    });
    return true;
  }

  /** True when a RENAME's new directory or a LINK's target (the request's second node) is `node`'s
   *  parent or `node`. */
  private secondNodeIs(op: number, node: FsNode): boolean {
    if (op !== Opcode.RENAME && op !== Opcode.RENAME2 && op !== Opcode.LINK) return false;
    if (this.end - this.base < IN_HEADER_SIZE + 8) return false;
    const second = this.union.nodes.get(this.dv.getUint32(this.base + IN_HEADER_SIZE, true), this.dv.getUint32(this.base + IN_HEADER_SIZE + 4, true));
    return second === node || (op !== Opcode.LINK && second === node.parent);
  }

  /** The completion of a request whose blocking half runs elsewhere (MetaIo): `finish` builds the
   *  reply from the job's result; a negative result or a throw becomes an error reply. The parent
   *  (and its host fd) is held until then, whatever the client forgets meanwhile. */
  private afterJob(parent: FsNode, done: ReplyCallback, finish: (result: number, uniqueLow: number, uniqueHigh: number) => Uint8Array): (result: number) => void {
    const low = this.dv.getUint32(this.base + 8, true);
    const high = this.dv.getUint32(this.base + 12, true);
    parent.lookups++;
    return (result) => {
      try {
        if (result < 0) throw fsError(-result);
        done(finish(result, low, high));
      } catch (error) {
        done(this.errorReplyFor(errnoOf(error), low, high));
      } finally {
        this.union.forget(parent, 1);
      }
    };
  }

  // ---- dispatch ---------------------------------------------------------------------------------

  private dispatch(op: number, request: Uint8Array, done: ReplyCallback, payload?: DataPayload): void {
    const I = IN_HEADER_SIZE;
    const u = this.union;
    switch (op) {
      case Opcode.INIT:
        return done(this.init());
      case Opcode.LOOKUP: {
        const [name] = this.cstring(I);
        const parent = this.node();
        let node: FsNode;
        try {
          node = u.lookup(parent, name);
        } catch (error) {
          if (!(error instanceof FsError) || error.errno !== Errno.ENOENT || this.timeout === 0) throw error;
          // A negative entry (node id 0) lets the client cache the absence: compilers and shells
          // probe many names that do not exist. Creations through us invalidate it in the client.
          for (let i = 0; i < ENTRY_OUT_SIZE; i += 4) this.out.setUint32(OUT_HEADER_SIZE + i, 0, true);
          this.setU64(this.out, OUT_HEADER_SIZE + 16, this.timeout);
          return done(this.ok(ENTRY_OUT_SIZE));
        }
        this.writeLookedUp(this.out, OUT_HEADER_SIZE, node);
        return done(this.ok(ENTRY_OUT_SIZE));
      }
      case Opcode.GETATTR:
        return done(this.attrReply(this.node()));
      case Opcode.SETATTR:
        return done(this.setattr());
      case Opcode.READLINK: {
        const target = u.readlink(this.node());
        this.reply.set(target, OUT_HEADER_SIZE);
        return done(this.ok(target.length));
      }
      case Opcode.SYMLINK: {
        const [name, next] = this.cstring(I);
        const [, after] = this.cstring(next);
        const target = this.buf.subarray(this.base + next, this.base + after);
        return done(this.entryReply(u.symlink(this.node(), name, target, this.uid, this.gid)));
      }
      case Opcode.MKNOD: {
        const mode = this.u32(I);
        const rdev = this.u32(I + 4);
        const [name] = this.cstring(I + 16);
        return done(this.entryReply(u.mknod(this.node(), name, mode, rdev, this.uid, this.gid)));
      }
      case Opcode.MKDIR: {
        const mode = this.u32(I);
        const [name, after] = this.cstring(I + 8);
        const parent = this.node();
        const plan = this.metaIo ? u.planMkdir(parent, name, this.uid, this.gid) : null;
        if (plan === null) return done(this.entryReply(u.mkdir(parent, name, mode, this.uid, this.gid)));
        const finish = this.afterJob(parent, done, (_result, low, high) => {
          this.writeLookedUp(this.out, OUT_HEADER_SIZE, u.completeMkdir(parent, name));
          return this.okFor(ENTRY_OUT_SIZE, low, high);
        });
        return this.metaIo!.mkdir(plan.dirFd, request.subarray(I + 8, after), mode & 0o7777, plan, finish);
      }
      case Opcode.UNLINK: {
        const [name] = this.cstring(I);
        u.unlink(this.node(), name);
        return done(this.ok(0));
      }
      case Opcode.RMDIR: {
        const [name] = this.cstring(I);
        u.rmdir(this.node(), name);
        return done(this.ok(0));
      }
      case Opcode.RENAME:
      case Opcode.RENAME2: {
        const namesAt = op === Opcode.RENAME ? I + 8 : I + 16;
        const flags = op === Opcode.RENAME ? 0 : this.u32(I + 8);
        this.need(namesAt);
        const newDir = this.node(I);
        const [oldName, next] = this.cstring(namesAt);
        const [newName] = this.cstring(next);
        u.rename(this.node(), oldName, newDir, newName, flags);
        return done(this.ok(0));
      }
      case Opcode.LINK: {
        this.need(I + 8);
        const target = this.node(I);
        const [name] = this.cstring(I + 8);
        return done(this.entryReply(u.link(target, this.node(), name)));
      }
      case Opcode.OPEN: {
        const flags = this.u32(I);
        const node = this.node();
        if (this.noOpen) {
          // "No open" mode (FUSE 7.28+): the kernel takes ENOSYS as success with fh 0 and stops
          // sending OPEN and RELEASE; reads and writes then use the node's own I/O fd. Saves two
          // requests per opened file. O_TRUNC arrives as SETATTR (atomic O_TRUNC is not offered).
          if (node.type !== S_IFREG) throw fsError(node.isDir ? Errno.EISDIR : Errno.EINVAL);
          throw fsError(Errno.ENOSYS);
        }
        if ((flags & O_ACCMODE) !== O_RDONLY || (flags & O_TRUNC) !== 0) u.copyUp(node);
        if ((this.u32(I + 4) & FUSE_OPEN_KILL_SUIDGID) !== 0 && (flags & O_TRUNC) !== 0) u.killPrivileges(node);
        // O_TRUNC is done by the host open (atomic O_TRUNC), passthrough or not.
        let fd = (flags & O_TRUNC) !== 0 ? u.open(node, this.hostOpenFlags(flags)) : -1;
        let backingId = 0;
        let counted = false;
        try {
          backingId = node.type === S_IFREG ? this.passthroughFor(node) : 0;
          counted = node.type === S_IFREG && this.passthrough !== null;
          if (backingId > 0 && fd >= 0) closeFd(fd);
          else if (backingId === 0 && fd < 0) fd = u.open(node, this.hostOpenFlags(flags));
        } catch (error) {
          if (fd >= 0) closeFd(fd);
          if (counted) this.passthrough!.release(node, backingId);
          throw error;
        }
        const f = this.addFile(backingId > 0 ? -1 : fd, node, null, backingId);
        this.writeOpenOut(OUT_HEADER_SIZE, f, FOPEN_KEEP_CACHE);
        return done(this.ok(OPEN_OUT_SIZE));
      }
      case Opcode.CREATE:
      case Opcode.TMPFILE: {
        const mode = this.u32(I + 4);
        const parent = this.node();
        if (op === Opcode.CREATE && this.metaIo) return this.createElsewhere(request, parent, mode, done);
        const made = op === Opcode.CREATE ? u.create(parent, this.cstring(I + 16)[0], mode, this.uid, this.gid) : u.tmpfile(parent, mode, this.uid, this.gid);
        this.writeEntry(this.out, OUT_HEADER_SIZE, made.node);
        return done(this.createdReply(made.node, made.fd, this.dv.getUint32(this.base + 8, true), this.dv.getUint32(this.base + 12, true)));
      }
      case Opcode.READ:
        return this.read(done, payload);
      case Opcode.WRITE:
        return this.write(request, done, payload);
      case Opcode.FLUSH:
        // Nothing to flush here (no server-side buffering; the kernel writes dirty pages back
        // before sending FLUSH). ENOSYS tells the kernel to stop sending it: one round trip less
        // per close(2).
        throw fsError(Errno.ENOSYS);
      case Opcode.RELEASE:
      case Opcode.RELEASEDIR:
        // fh 0: a file used without OPEN (its I/O fd belongs to the node): nothing to release.
        if (op === Opcode.RELEASE && this.noOpen && this.u32(I) === 0 && this.u32(I + 4) === 0) return done(this.ok(0));
        this.releaseFile(this.file());
        return done(this.ok(0));
      case Opcode.FSYNC:
      case Opcode.FSYNCDIR:
        return this.fsync(op, done);
      case Opcode.STATFS:
        return done(this.statfs());
      case Opcode.SETXATTR: {
        const size = this.u32(I);
        const flags = this.u32(I + 4);
        const [name, next] = this.cstring(this.setxattrExt ? I + 16 : I + 8);
        this.need(next + size);
        u.setxattr(this.node(), name, this.buf.subarray(this.base + next, this.base + next + size), flags);
        return done(this.ok(0));
      }
      case Opcode.GETXATTR: {
        const size = Math.min(this.u32(I), this.reply.length - OUT_HEADER_SIZE);
        const [name] = this.cstring(I + 8);
        const n = u.getxattr(this.node(), name, size === 0 ? null : this.replyData, size);
        if (n < 0) return done(this.errorReply(request, -n));
        if (size === 0) {
          return done(this.sizeReply(n));
        }
        return done(this.ok(n));
      }
      case Opcode.LISTXATTR: {
        const size = this.u32(I);
        const list = u.listxattr(this.node());
        if (size === 0) {
          return done(this.sizeReply(list.length));
        }
        if (list.length > size) throw fsError(Errno.ERANGE);
        this.reply.set(list, OUT_HEADER_SIZE);
        return done(this.ok(list.length));
      }
      case Opcode.REMOVEXATTR: {
        const [name] = this.cstring(I);
        u.removexattr(this.node(), name);
        return done(this.ok(0));
      }
      case Opcode.OPENDIR: {
        const node = this.node();
        if (!node.isDir) throw fsError(Errno.ENOTDIR);
        const f = this.addFile(-1, node, null);
        // The client may keep directory listings: the layers change only through this server.
        this.writeOpenOut(OUT_HEADER_SIZE, f, this.timeout > 0 ? FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE : 0);
        return done(this.ok(OPEN_OUT_SIZE));
      }
      case Opcode.READDIR:
      case Opcode.READDIRPLUS:
        return done(this.readdir(op === Opcode.READDIRPLUS));
      case Opcode.ACCESS:
        // default_permissions: the client kernel checks permissions itself from our attributes.
        this.node();
        return done(this.ok(0));
      case Opcode.FALLOCATE: {
        const f = this.ioFile(true);
        sys(fallocate(f.fd, this.u32(I + 24), this.u64Wide(I + 8), this.u64Wide(I + 16)));
        return done(this.ok(0));
      }
      case Opcode.LSEEK: {
        const f = this.ioFile(false);
        const whence = this.u32(I + 16);
        if (whence !== SEEK_DATA && whence !== SEEK_HOLE) throw fsError(Errno.EINVAL);
        const pos = sys(lseek(f.fd, this.u64(I + 8), whence));
        this.setU64(this.out, OUT_HEADER_SIZE, pos);
        return done(this.ok(8));
      }
      case Opcode.SYNCFS: {
        for (const m of u.mounts) if (m.upper) syncfs(m.upper.fd);
        return done(this.ok(0));
      }
      case Opcode.DESTROY:
        return done(this.ok(0));
      default:
        // Locks are not negotiated (the client kernel keeps POSIX and flock locks itself), nor are
        // ioctl, poll, bmap, DAX mappings or copy_file_range (the kernel falls back to read/write).
        throw fsError(Errno.ENOSYS);
    }
  }

  private init(): Uint8Array {
    const I = IN_HEADER_SIZE;
    const major = this.u32(I);
    const minor = this.u32(I + 4);
    const out = this.out;
    if (major < FUSE_KERNEL_VERSION) throw fsError(Errno.EPROTO);
    for (let i = 0; i < INIT_OUT_SIZE; i += 4) out.setUint32(OUT_HEADER_SIZE + i, 0, true);
    out.setUint32(OUT_HEADER_SIZE, FUSE_KERNEL_VERSION, true);
    out.setUint32(OUT_HEADER_SIZE + 4, FUSE_KERNEL_MINOR_VERSION, true);
    // A newer major: answer with ours only; the kernel then retries with our major (fuse.h).
    if (major > FUSE_KERNEL_VERSION) return this.ok(8);
    if (minor < FUSE_MIN_MINOR_VERSION) throw fsError(Errno.EPROTO);
    const maxReadahead = this.u32(I + 8);
    const offered = this.u32(I + 12);
    const offered2 = (offered & FUSE_INIT_EXT) !== 0 ? this.u32(I + 16) : 0;
    const passthrough = this.backingFiles !== undefined && minor >= 40 && (offered2 & FUSE2_PASSTHROUGH) !== 0;
    this.noOpen = this.noOpenWanted && !passthrough;
    const wanted = FUSE_ASYNC_READ | (this.noOpen ? 0 : FUSE_ATOMIC_O_TRUNC) | FUSE_BIG_WRITES | FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO |
      FUSE_ASYNC_DIO | (this.offerWriteback && !passthrough ? FUSE_WRITEBACK_CACHE : 0) | FUSE_PARALLEL_DIROPS | FUSE_MAX_PAGES | FUSE_CACHE_SYMLINKS |
      (passthrough ? FUSE_INIT_EXT : 0) |
      // We clear set-user/group-ID bits ourselves when the kernel flags a write, truncate or chown;
      // the mount becomes SB_NOSEC, so the kernel asks for security.capability once per inode
      // (before its first write; measured with a 6.1 guest: one GETXATTR per new file), not
      // before every write.
      FUSE_HANDLE_KILLPRIV_V2;
    const flags = (offered & wanted) >>> 0;
    this.minor = Math.min(minor, FUSE_KERNEL_MINOR_VERSION);
    this.writeback = (flags & FUSE_WRITEBACK_CACHE) !== 0;
    this.setxattrExt = (flags & FUSE_SETXATTR_EXT) !== 0;
    out.setUint32(OUT_HEADER_SIZE + 4, this.minor, true);
    out.setUint32(OUT_HEADER_SIZE + 8, maxReadahead, true);
    out.setUint32(OUT_HEADER_SIZE + 12, flags, true);
    out.setUint16(OUT_HEADER_SIZE + 16, this.maxBackground, true);
    out.setUint16(OUT_HEADER_SIZE + 18, Math.max(1, Math.floor((this.maxBackground * 3) / 4)), true); // congestion_threshold
    out.setUint32(OUT_HEADER_SIZE + 20, MAX_WRITE, true);
    out.setUint32(OUT_HEADER_SIZE + 24, 1, true); // time_gran: nanoseconds
    out.setUint16(OUT_HEADER_SIZE + 28, MAX_PAGES, true);
    if (passthrough) {
      out.setUint32(OUT_HEADER_SIZE + 32, FUSE2_PASSTHROUGH, true);
      // Depth 1: backing files on plain file systems, and this mount may itself be a lower layer
      // of an overlayfs.
      out.setUint32(OUT_HEADER_SIZE + INIT_OUT_MAX_STACK_DEPTH, 1, true);
      const table = new PassthroughTable(this.backingFiles!, this.log);
      this.passthrough = table;
      this.union.nodeFreed = (node) => {
        table.forget(node);
        this.metrics.backingFiles = table.registered;
      };
    }
    this.initialized = true;
    return this.ok(INIT_OUT_SIZE);
  }

  private setattr(): Uint8Array {
    const I = IN_HEADER_SIZE;
    const valid = this.u32(I);
    const node = this.node();
    const attr: SetAttr = {};
    if (valid & FATTR_MODE) attr.mode = this.u32(I + 68);
    if (valid & FATTR_UID) attr.uid = this.u32(I + 76);
    if (valid & FATTR_GID) attr.gid = this.u32(I + 80);
    if (valid & FATTR_SIZE) {
      attr.size = this.u64(I + 16);
      if ((valid & FATTR_FH) !== 0 && (this.u32(I + 8) !== 0 || this.u32(I + 12) !== 0)) {
        const f = this.file(I + 8);
        if (f.node === node && f.fd >= 0) attr.fd = f.fd;
      }
    }
    const UTIME_NOW = 0x3fffffff;
    if (valid & FATTR_ATIME_NOW) attr.atime = { sec: 0, nsec: UTIME_NOW };
    else if (valid & FATTR_ATIME) attr.atime = { sec: this.u64(I + 32), nsec: this.u32(I + 56) };
    if (valid & FATTR_MTIME_NOW) attr.mtime = { sec: 0, nsec: UTIME_NOW };
    else if (valid & FATTR_MTIME) attr.mtime = { sec: this.u64(I + 40), nsec: this.u32(I + 60) };
    if ((attr.atime && attr.atime.nsec > 999_999_999 && attr.atime.nsec !== UTIME_NOW) || (attr.mtime && attr.mtime.nsec > 999_999_999 && attr.mtime.nsec !== UTIME_NOW)) {
      throw fsError(Errno.EINVAL);
    }
    if (Object.keys(attr).length > 0) this.union.setattr(node, attr);
    if ((valid & FATTR_KILL_SUIDGID) !== 0 && (valid & FATTR_MODE) === 0) this.union.killPrivileges(node);
    return this.attrReply(node);
  }

  private statfs(): Uint8Array {
    const node = this.node();
    sys(fstatfs(this.union.statfsFd(node), this.statfsBuf));
    const sv = this.statfsView;
    const out = this.out;
    const o = OUT_HEADER_SIZE;
    const copy64 = (to: number, from: number) => {
      out.setUint32(o + to, sv.getUint32(from, true), true);
      out.setUint32(o + to + 4, sv.getUint32(from + 4, true), true);
    };
    copy64(0, StatfsOffset.blocks);
    copy64(8, StatfsOffset.bfree);
    copy64(16, StatfsOffset.bavail);
    copy64(24, StatfsOffset.files);
    copy64(32, StatfsOffset.ffree);
    out.setUint32(o + 40, sv.getUint32(StatfsOffset.bsize, true), true);
    out.setUint32(o + 44, sv.getUint32(StatfsOffset.namelen, true), true);
    out.setUint32(o + 48, sv.getUint32(StatfsOffset.frsize, true), true);
    for (let i = 52; i < STATFS_OUT_SIZE; i += 4) out.setUint32(o + i, 0, true);
    return this.ok(STATFS_OUT_SIZE);
  }

  private readdir(plus: boolean): Uint8Array {
    const I = IN_HEADER_SIZE;
    const f = this.file();
    const offset = this.u64(I + 8);
    const size = Math.min(this.u32(I + 16), this.reply.length - OUT_HEADER_SIZE);
    const dir = f.node;
    if (f.entries === null || offset === 0) f.entries = [{ name: '.', type: S_IFDIR, layer: -1 }, { name: '..', type: S_IFDIR, layer: -1 }, ...this.union.list(dir)];
    const entries = f.entries;
    const out = this.out;
    let pos = OUT_HEADER_SIZE;
    const limit = OUT_HEADER_SIZE + size;
    for (let i = offset; i < entries.length; i++) {
      const e = entries[i]!;
      const nameLen = Buffer.byteLength(e.name, 'latin1');
      const recordHeader = plus ? ENTRY_OUT_SIZE + DIRENT_HEADER_SIZE : DIRENT_HEADER_SIZE;
      const recordSize = (recordHeader + nameLen + 7) & ~7;
      if (pos + recordSize > limit) break;
      let ino = 0;
      if (plus) {
        if (e.name === '.' || e.name === '..') {
          for (let k = 0; k < ENTRY_OUT_SIZE; k += 4) out.setUint32(pos + k, 0, true);
        } else {
          let child: FsNode;
          try {
            child = this.union.lookup(dir, e.name);
          } catch {
            continue; // vanished since the listing was taken
          }
          this.writeLookedUp(out, pos, child);
          ino = out.getUint32(pos + 40, true);
        }
      }
      const d = pos + (plus ? ENTRY_OUT_SIZE : 0);
      if (!plus && i >= 2) {
        const n = this.union.direntIno(dir, e);
        out.setUint32(d, n.low, true);
        out.setUint32(d + 4, n.high, true);
      } else if (ino === 0) {
        this.setU64(out, d, 1); // "." and "..": the client does not use these numbers
      } else {
        out.setUint32(d, out.getUint32(pos + 40, true), true);
        out.setUint32(d + 4, out.getUint32(pos + 44, true), true);
      }
      this.setU64(out, d + 8, i + 1);
      out.setUint32(d + 16, nameLen, true);
      out.setUint32(d + 20, e.type >>> 12, true);
      this.reply.write(e.name, d + DIRENT_HEADER_SIZE, 'latin1');
      this.reply.fill(0, d + DIRENT_HEADER_SIZE + nameLen, pos + recordSize);
      pos += recordSize;
    }
    return this.ok(pos - OUT_HEADER_SIZE);
  }

  // ---- data path (libuv thread pool) ------------------------------------------------------------

  private read(done: ReplyCallback, payload?: DataPayload): void {
    const I = IN_HEADER_SIZE;
    const f = this.ioFile(false);
    const offset = this.u64(I + 8);
    const size = Math.min(this.u32(I + 16), MAX_WRITE);
    if (f.fd < 0) throw fsError(Errno.EISDIR);
    // Straight into the transport's memory when it offers the reply's data area as iovecs (and
    // they hold `size` bytes: a smaller buffer gets the copied reply, as without a payload).
    if (payload !== undefined && payload.limit(size)) {
      const n = preadv2(f.fd, payload.iov, payload.iovCount, offset, RWF_NOWAIT);
      if (n === size) return done(this.placed(n));
      if (this.dataIo.readv) return this.dataIo.readv(f.fd, payload.iov, payload.iovCount, size, offset, this.uniqueOf(), done);
      // An asynchronous DataIo finishes after the iovecs may be stale: it replies with a copy.
      return this.dataIo.read(f.fd, offset, size, this.uniqueOf(), done);
    }
    // Page-cache hit: complete inline. A short or EAGAIN result goes to the blocking path, because
    // a short READ reply means end of file to the client.
    this.iov[1] = BigInt(size);
    const n = preadv2(f.fd, this.iov, 1, offset, RWF_NOWAIT);
    if (n === size) return done(this.ok(n));
    this.dataIo.read(f.fd, offset, size, this.uniqueOf(), done);
  }

  private write(request: Uint8Array, done: ReplyCallback, payload?: DataPayload): void {
    const I = IN_HEADER_SIZE;
    const f = this.ioFile(true);
    const offset = this.u64(I + 8);
    const size = this.u32(I + 16);
    const dataAt = I + WRITE_IN_SIZE;
    this.need(dataAt + size);
    if (size > MAX_WRITE) throw fsError(Errno.EINVAL);
    if (f.fd < 0) throw fsError(Errno.EISDIR);
    const start = this.base - request.byteOffset + dataAt;
    if ((this.u32(I + 20) & FUSE_WRITE_KILL_SUIDGID) !== 0) this.union.killPrivileges(f.node);
    if (payload !== undefined) return this.writeFrom(payload, f.fd, size, offset, done);
    if (size <= INLINE_WRITE_MAX) {
      const n = sys(pwrite(f.fd, request.subarray(start, start + size), size, offset));
      return done(this.sizeReply(n));
    }
    this.dataIo.write(f.fd, request.subarray(start, start + size), offset, this.uniqueOf(), done);
  }

  /** WRITE whose data is the payload's (decode() counted it towards the request's length, and
   *  need() checked that it holds `size` bytes). */
  private writeFrom(payload: DataPayload, fd: number, size: number, offset: number, done: ReplyCallback): void {
    if (!payload.limit(size)) throw fsError(Errno.EINVAL);
    if (size <= INLINE_WRITE_MAX) {
      const n = sys(pwritev(fd, payload.iov, payload.iovCount, offset));
      return done(this.sizeReply(n));
    }
    if (this.dataIo.writev) return this.dataIo.writev(fd, payload.iov, payload.iovCount, size, offset, this.uniqueOf(), done);
    // An asynchronous DataIo finishes after this returns, when the iovecs may be stale: it gets a copy.
    const start = IN_HEADER_SIZE + WRITE_IN_SIZE;
    const copied = payload.gather();
    this.dataIo.write(fd, copied.subarray(start, start + size), offset, this.uniqueOf(), done);
  }

  /** A reply whose body is {u32 size, u32 padding}: fuse_write_out, and fuse_getxattr_out for
   *  GETXATTR / LISTXATTR size queries. */
  private sizeReply(n: number): Uint8Array {
    this.out.setUint32(OUT_HEADER_SIZE, n, true);
    this.out.setUint32(OUT_HEADER_SIZE + 4, 0, true);
    return this.ok(8);
  }

  /** The reply to a READ whose `n` bytes went straight to the payload: the out header alone,
   *  its len counting them. */
  private placed(n: number): Uint8Array {
    return this.header(OUT_HEADER_SIZE + n, 0, this.dv.getUint32(this.base + 8, true), this.dv.getUint32(this.base + 12, true)).subarray(0, OUT_HEADER_SIZE);
  }

  private fsync(op: number, done: ReplyCallback): void {
    const f = op === Opcode.FSYNCDIR ? this.file() : this.ioFile(false);
    const datasync = (this.u32(IN_HEADER_SIZE + 8) & FUSE_FSYNC_FDATASYNC) !== 0;
    if (op === Opcode.FSYNCDIR && f.fd < 0) (f as OpenFile).fd = this.union.openDirFd(f.node);
    this.dataIo.fsync(f.fd, datasync, this.uniqueOf(), done);
  }

  /** Closes every open handle (the client is gone). */
  closeAll(): void {
    for (const f of [...this.files.values()]) this.releaseFile(f);
    for (const fd of this.deferredClose.splice(0)) closeFd(fd);
  }
}
