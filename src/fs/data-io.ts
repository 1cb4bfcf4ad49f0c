// Where the FUSE handler's blocking data operations run. The handler completes reads that hit the
// host page cache (preadv2 RWF_NOWAIT) and small writes inline; everything that may block for long
// (a cache-missing read, a large write, fsync) goes to a DataIo so that other requests keep flowing.
//
// LibuvDataIo (the default) uses node:fs callbacks in libuv's thread pool and replies through the
// handler's `done` callback. The /dev/fuse transport supplies its own DataIo that hands the work to
// I/O worker threads which write the reply themselves (see dev-fuse-loop.ts). SyncDataIo blocks the
// calling thread: for a device with a thread of its own (src/vhost-user/queue-thread.ts). Only a
// synchronous DataIo offers readv/writev (data moved in place through a transport's iovecs, see
// data-payload.ts): the iovecs are valid only until the call returns.
import { fdatasync, fsync, read, write } from 'node:fs';
import { fdatasync as fdatasyncFd, fsync as fsyncFd, lastErrno, nativeBuffer, pread, preadv, pwrite, pwritev } from '../native/fs-calls.js';
import { errnoOf } from './errors.js';
import { MAX_WRITE, OUT_HEADER_SIZE } from './fuse-abi.js';

/** Linux errno: a signal interrupted the call (retried). */
const EINTR = 4;

/** The request's unique id as two u32 halves (no bigint on the data path). */
export interface Unique {
  readonly low: number;
  readonly high: number;
}

export type DataReply = (reply: Uint8Array) => void;

export interface DataIo {
  /** READ of `size` bytes at `offset`; reply = out header + data. */
  read(fd: number, offset: number, size: number, unique: Unique, done: DataReply): void;
  /** WRITE of `data` (a view into the request, valid until the reply) at `offset`; reply = header + fuse_write_out. */
  write(fd: number, data: Uint8Array, offset: number, unique: Unique, done: DataReply): void;
  /** READ of `size` bytes at `offset` into the `count` iovecs of `iov` (which describe exactly
   *  `size` bytes, and may be changed); reply = the out header alone, len = 16 + bytes read. Done
   *  before it returns. */
  readv?(fd: number, iov: BigUint64Array, count: number, size: number, offset: number, unique: Unique, done: DataReply): void;
  /** WRITE of the `size` bytes the `count` iovecs of `iov` describe (may be changed); reply =
   *  header + fuse_write_out. Done before it returns. */
  writev?(fd: number, iov: BigUint64Array, count: number, size: number, offset: number, unique: Unique, done: DataReply): void;
  /** FSYNC / FSYNCDIR; reply = header only. */
  fsync(fd: number, datasync: boolean, unique: Unique, done: DataReply): void;
  /** True while an operation on `fd` is in flight (a RELEASE must not close it yet). */
  busy(fd: number): boolean;
}

function header(out: DataView, length: number, error: number, unique: Unique): void {
  out.setUint32(0, length, true);
  out.setInt32(4, error, true);
  out.setUint32(8, unique.low, true);
  out.setUint32(12, unique.high, true);
}

export class LibuvDataIo implements DataIo {
  private readonly pool: Buffer[] = [];
  private readonly inFlight = new Map<number, number>();

  private take(size: number): Buffer {
    const b = this.pool.pop();
    return b && b.length >= size ? b : Buffer.allocUnsafe(Math.max(size, OUT_HEADER_SIZE + MAX_WRITE));
  }
  private begin(fd: number): void {
    this.inFlight.set(fd, (this.inFlight.get(fd) ?? 0) + 1);
  }
  private end(fd: number): void {
    const n = (this.inFlight.get(fd) ?? 1) - 1;
    if (n <= 0) this.inFlight.delete(fd);
    else this.inFlight.set(fd, n);
  }
  busy(fd: number): boolean {
    return this.inFlight.has(fd);
  }

  read(fd: number, offset: number, size: number, unique: Unique, done: DataReply): void {
    const reply = this.take(OUT_HEADER_SIZE + size);
    const out = new DataView(reply.buffer, reply.byteOffset, OUT_HEADER_SIZE);
    this.begin(fd);
    read(fd, reply, OUT_HEADER_SIZE, size, offset, (error, n) => {
      this.end(fd);
      if (error) header(out, OUT_HEADER_SIZE, -errnoOf(error), unique);
      else header(out, OUT_HEADER_SIZE + n, 0, unique);
      done(reply.subarray(0, error ? OUT_HEADER_SIZE : OUT_HEADER_SIZE + n));
      this.pool.push(reply);
    });
  }

  write(fd: number, data: Uint8Array, offset: number, unique: Unique, done: DataReply): void {
    this.begin(fd);
    write(fd, data, 0, data.length, offset, (error, n) => {
      this.end(fd);
      const reply = new Uint8Array(OUT_HEADER_SIZE + 8);
      const out = new DataView(reply.buffer);
      if (error) {
        header(out, OUT_HEADER_SIZE, -errnoOf(error), unique);
        return done(reply.subarray(0, OUT_HEADER_SIZE));
      }
      header(out, OUT_HEADER_SIZE + 8, 0, unique);
      out.setUint32(OUT_HEADER_SIZE, n, true);
      done(reply);
    });
  }

  fsync(fd: number, datasync: boolean, unique: Unique, done: DataReply): void {
    this.begin(fd);
    const cb = (error: NodeJS.ErrnoException | null) => {
      this.end(fd);
      const reply = new Uint8Array(OUT_HEADER_SIZE);
      header(new DataView(reply.buffer), OUT_HEADER_SIZE, error ? -errnoOf(error) : 0, unique);
      done(reply);
    };
    if (datasync) fdatasync(fd, cb);
    else fsync(fd, cb);
  }
}

/**
 * Blocking data I/O on the calling thread: for a device that owns a thread of its own (the
 * vhost-user queue thread), where waiting in pread/pwrite costs no other request anything it
 * would not wait for anyway and saves the round trip through libuv's pool and event loop.
 * Replies are built in one native buffer reused by every call (valid until the next call).
 */
export class SyncDataIo implements DataIo {
  private readonly native = nativeBuffer(OUT_HEADER_SIZE + MAX_WRITE);
  private readonly reply = this.native.buffer;
  private readonly out = new DataView(this.reply.buffer, this.reply.byteOffset, this.reply.byteLength);
  private readonly data = this.reply.subarray(OUT_HEADER_SIZE);

  busy(): boolean {
    return false;
  }

  read(fd: number, offset: number, size: number, unique: Unique, done: DataReply): void {
    // A short read is end of file to the client: retry until EOF (0) or an error.
    const got = transferAll(pread, fd, this.data, Math.min(size, MAX_WRITE), offset);
    if (got < 0) {
      header(this.out, OUT_HEADER_SIZE, got, unique);
      return done(this.reply.subarray(0, OUT_HEADER_SIZE));
    }
    header(this.out, OUT_HEADER_SIZE + got, 0, unique);
    done(this.reply.subarray(0, OUT_HEADER_SIZE + got));
  }

  write(fd: number, data: Uint8Array, offset: number, unique: Unique, done: DataReply): void {
    this.writeReply(transferAll(pwrite, fd, data, data.length, offset), unique, done);
  }

  /** fuse_write_out for `put` bytes written, or the error -errno. */
  private writeReply(put: number, unique: Unique, done: DataReply): void {
    if (put < 0) {
      header(this.out, OUT_HEADER_SIZE, put, unique);
      return done(this.reply.subarray(0, OUT_HEADER_SIZE));
    }
    header(this.out, OUT_HEADER_SIZE + 8, 0, unique);
    this.out.setUint32(OUT_HEADER_SIZE, put, true);
    this.out.setUint32(OUT_HEADER_SIZE + 4, 0, true);
    done(this.reply.subarray(0, OUT_HEADER_SIZE + 8));
  }

  readv(fd: number, iov: BigUint64Array, count: number, size: number, offset: number, unique: Unique, done: DataReply): void {
    const got = transferAllVectored(preadv, fd, iov, count, size, offset);
    header(this.out, OUT_HEADER_SIZE + (got < 0 ? 0 : got), got < 0 ? got : 0, unique);
    done(this.reply.subarray(0, OUT_HEADER_SIZE));
  }

  writev(fd: number, iov: BigUint64Array, count: number, size: number, offset: number, unique: Unique, done: DataReply): void {
    const put = transferAllVectored(pwritev, fd, iov, count, size, offset);
    this.writeReply(put, unique, done);
  }

  fsync(fd: number, datasync: boolean, unique: Unique, done: DataReply): void {
    let result: number;
    do result = datasync ? fdatasyncFd(fd) : fsyncFd(fd);
    while (result < 0 && lastErrno() === EINTR);
    header(this.out, OUT_HEADER_SIZE, result < 0 ? -lastErrno() : 0, unique);
    done(this.reply.subarray(0, OUT_HEADER_SIZE));
  }
}

/** pread or pwrite of `want` bytes of `buffer` at `offset`, resumed after short transfers and EINTR
 *  until done, end of file (0) or an error: the bytes moved, or -errno if the first call failed. */
function transferAll(call: typeof pread, fd: number, buffer: Uint8Array, want: number, offset: number): number {
  return resumed(want, (moved) => call(fd, buffer.subarray(moved), want - moved, offset + moved));
}

/**
 * preadv or pwritev of the `size` bytes described by iov[0, count), resumed like transferAll: after
 * a short transfer the iovecs are advanced past the bytes moved (rare, so the bigint arithmetic
 * and the subarray it costs are fine there). Returns the bytes moved, or -errno if the first call
 * failed; a later failure reports what was moved before it.
 */
export function transferAllVectored(call: typeof preadv, fd: number, iov: BigUint64Array, count: number, size: number, offset: number): number {
  let first = 0;
  const attempt = (moved: number): number => (first < count ? call(fd, first === 0 ? iov : iov.subarray(2 * first), count - first, offset + moved) : 0);
  return resumed(size, attempt, (n) => {
    // Skip the iovecs filled completely, then trim the one filled in part.
    let left = BigInt(n);
    while (first < count && left >= iov[2 * first + 1]!) {
      left -= iov[2 * first + 1]!;
      first++;
    }
    if (first < count && left > 0n) {
      iov[2 * first] = iov[2 * first]! + left;
      iov[2 * first + 1] = iov[2 * first + 1]! - left;
    }
  });
}

/** Calls attempt(bytesMovedSoFar) until `want` bytes moved, it returns 0 (end of file) or fails
 *  (EINTR is retried); after a short transfer, advance(n) before the next attempt. Returns the
 *  bytes moved, or -errno if the first attempt failed. */
function resumed(want: number, attempt: (moved: number) => number, advance?: (n: number) => void): number {
  let moved = 0;
  while (moved < want) {
    const n = attempt(moved);
    if (n < 0) {
      const errno = lastErrno();
      if (errno === EINTR) continue;
      if (moved > 0) break;
      return -errno;
    }
    if (n === 0) break;
    moved += n;
    if (moved < want) advance?.(n);
  }
  return moved;
}
