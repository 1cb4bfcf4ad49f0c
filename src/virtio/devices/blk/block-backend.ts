// Where a virtio-blk device's bytes live. The device model does no I/O of its own; it calls a
// BlockBackend with guest buffers (zero-copy views of guest RAM). Calls are synchronous: a
// vhost-user back end serves one device per process, where a synchronous pread into guest
// memory is the cheapest path Node offers (no threadpool hop, no copy).
import { closeSync, fdatasyncSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { InputError } from '../../../common/errors.js';
import * as libc from '../../../native/libc.js';
import { EOPNOTSUPP, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE, fallocate } from '../../../native/file-calls.js';

export interface BlockBackend {
  /** Size in bytes (the device exposes whole 512-byte sectors). */
  readonly size: number;
  readonly readonly: boolean;
  /** Fills `target` from byte `position`; returns false on an I/O error. */
  read(target: Uint8Array, position: number): boolean;
  write(source: Uint8Array, position: number): boolean;
  flush(): boolean;
  /** Deallocates [position, position + length); reads may return anything after. */
  discard(position: number, length: number): boolean;
  /** Makes [position, position + length) read as zeros; `unmap` allows deallocating. */
  writeZeroes(position: number, length: number, unmap: boolean): boolean;
  close(): void;
}

const ZERO_CHUNK = new Uint8Array(1 << 20);

/** A raw image file. */
export class FileBlockBackend implements BlockBackend {
  readonly size: number;
  private fd: number;
  /** Last I/O error, for logs and tests. */
  lastError: string | undefined;

  constructor(path: string, readonly readonly: boolean) {
    try {
      this.fd = openSync(path, readonly ? 'r' : 'r+');
    } catch (error) {
      throw new InputError(`cannot open image ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
    }
    const stat = fstatSync(this.fd);
    if (!stat.isFile()) {
      closeSync(this.fd);
      throw new InputError(`image ${path} is not a regular file`);
    }
    this.size = stat.size;
  }

  read(target: Uint8Array, position: number): boolean {
    try {
      let done = 0;
      while (done < target.length) {
        const n = readSync(this.fd, target, done, target.length - done, position + done);
        if (n === 0) {
          target.fill(0, done);
          break;
        }
        done += n;
      }
      return true;
    } catch (error) {
      return this.failed(error);
    }
  }

  write(source: Uint8Array, position: number): boolean {
    if (this.readonly) return false;
    try {
      let done = 0;
      while (done < source.length) done += writeSync(this.fd, source, done, source.length - done, position + done);
      return true;
    } catch (error) {
      return this.failed(error);
    }
  }

  flush(): boolean {
    if (this.readonly) return true;
    try {
      fdatasyncSync(this.fd);
      return true;
    } catch (error) {
      return this.failed(error);
    }
  }

  discard(position: number, length: number): boolean {
    if (this.readonly) return false;
    if (fallocate(this.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, position, length) === 0) return true;
    // A file system without hole punching: discard is only a hint, so success.
    return libc.lastErrno() === EOPNOTSUPP || this.failed(new Error(`fallocate punch: ${libc.errnoName(libc.lastErrno())}`));
  }

  writeZeroes(position: number, length: number, unmap: boolean): boolean {
    if (this.readonly) return false;
    const mode = unmap ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
    if (fallocate(this.fd, mode, position, length) === 0) return true;
    if (libc.lastErrno() !== EOPNOTSUPP) return this.failed(new Error(`fallocate zero: ${libc.errnoName(libc.lastErrno())}`));
    for (let done = 0; done < length; done += ZERO_CHUNK.length) {
      if (!this.write(ZERO_CHUNK.subarray(0, Math.min(ZERO_CHUNK.length, length - done)), position + done)) return false;
    }
    return true;
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }

  private failed(error: unknown): false {
    this.lastError = error instanceof Error ? error.message : String(error);
    return false;
  }
}

/** An in-memory disk: for tests and scratch devices. */
export class MemoryBlockBackend implements BlockBackend {
  readonly bytes: Uint8Array;
  flushes = 0;

  constructor(size: number, readonly readonly = false) {
    this.bytes = new Uint8Array(size);
  }

  get size(): number {
    return this.bytes.length;
  }

  read(target: Uint8Array, position: number): boolean {
    target.set(this.bytes.subarray(position, position + target.length));
    return true;
  }

  write(source: Uint8Array, position: number): boolean {
    if (this.readonly) return false;
    this.bytes.set(source, position);
    return true;
  }

  flush(): boolean {
    this.flushes++;
    return true;
  }

  discard(position: number, length: number): boolean {
    return this.writeZeroes(position, length);
  }

  writeZeroes(position: number, length: number): boolean {
    if (this.readonly) return false;
    this.bytes.fill(0, position, position + length);
    return true;
  }

  close(): void {}
}
