// The host transport: serves a FuseHandler over /dev/fuse at a host mount point.
//
// Requests are read with several outstanding fs.read() calls in the libuv thread pool, so several
// requests are in flight at once and a slow one (a large fsync) does not stall the others; the
// pool must be larger than the number of outstanding reads (UV_THREADPOOL_SIZE, set by the CLI
// before Node starts its pool). Replies are written synchronously. The mount uses `mount -i` with
// the fd passed to the child (HOST-NOTES); unmounting is asynchronous because the kernel flushes
// dirty pages through us while umount runs. The kernel reports the end of the mount with ENODEV.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync, read as readCb, realpathSync, statSync, writeSync } from 'node:fs';
import { InputError } from '../common/errors.js';
import { getrlimit, RLIMIT_NOFILE, setrlimit } from '../native/fs-calls.js';
import { Errno, errnoOf } from './errors.js';
import { FuseHandler } from './fuse-handler.js';
import { REQUEST_BUFFER_SIZE } from './fuse-abi.js';
import { isWithin } from './config.js';
import type { UnionFs } from './union.js';

export interface DevFuseOptions {
  /** Requests read ahead concurrently (each holds a 1 MiB buffer and a thread-pool thread). */
  readonly concurrency?: number;
  readonly log?: (line: string) => void;
}

export class FuseMountError extends Error {
  readonly kind = 'fuse-mount' as const;
  constructor(message: string) {
    super(message);
    this.name = 'FuseMountError';
  }
}

/** Checks a host mount point: it exists, is a directory, and neither lies in a layer nor contains one. */
export function checkMountPoint(mountPoint: string, union: UnionFs): string {
  let real: string;
  try {
    real = realpathSync(mountPoint);
  } catch {
    throw new InputError(`mount point "${mountPoint}" does not exist`);
  }
  if (!statSync(real).isDirectory()) throw new InputError(`mount point "${mountPoint}" is not a directory`);
  for (const m of union.mounts) {
    for (const l of m.layers) {
      if (isWithin(real, l.hostPath) || isWithin(l.hostPath, real)) {
        throw new InputError(`mount point "${mountPoint}" overlaps layer "${l.hostPath}" (the server would serve itself)`);
      }
    }
  }
  return real;
}

/** Raises RLIMIT_NOFILE to its hard limit: every node the client holds is an O_PATH fd. */
export function raiseFdLimit(): void {
  const lim = new BigUint64Array(2);
  if (getrlimit(RLIMIT_NOFILE, lim) === 0 && lim[0]! < lim[1]!) {
    lim[0] = lim[1]!;
    setrlimit(RLIMIT_NOFILE, lim);
  }
}

export class DevFuseServer {
  private fd = -1;
  private inFlight = 0;
  private reading = 0;
  private stopped = false;
  private unmounting = false;
  private finished!: Promise<void>;
  private resolveFinished!: () => void;
  private readonly log: (line: string) => void;
  private readonly concurrency: number;

  constructor(readonly handler: FuseHandler, readonly mountPoint: string, options: DevFuseOptions = {}) {
    this.log = options.log ?? ((line) => process.stderr.write(`novm fs: ${line}\n`));
    this.concurrency = options.concurrency ?? 8;
  }

  /** Opens /dev/fuse, mounts, and starts serving. Resolves once the mount is in place. */
  mount(): void {
    try {
      this.fd = openSync('/dev/fuse', 'r+');
    } catch (error) {
      throw new InputError(`cannot open /dev/fuse: ${errnoOf(error) === Errno.EACCES || errnoOf(error) === Errno.EPERM ? 'permission denied' : (error as Error).message}`);
    }
    const options = `fd=3,rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions,max_read=${1 << 20}`;
    const result = spawnSync('mount', ['-i', '-t', 'fuse.novm', '-o', options, 'novm', this.mountPoint], {
      stdio: ['ignore', 'pipe', 'pipe', this.fd],
      encoding: 'utf8',
      timeout: 10_000,
    });
    if (result.status !== 0) {
      closeSync(this.fd);
      this.fd = -1;
      const why = (result.stderr || result.error?.message || `exit ${result.status}`).trim().split('\n')[0];
      throw new FuseMountError(`mount of ${this.mountPoint} failed: ${why}`);
    }
    this.finished = new Promise((resolve) => (this.resolveFinished = resolve));
    for (let i = 0; i < this.concurrency; i++) this.readNext(Buffer.allocUnsafe(REQUEST_BUFFER_SIZE));
  }

  /** Resolves when the kernel has ended the session (after unmount) and everything is closed. */
  get done(): Promise<void> {
    return this.finished;
  }

  private readNext(buffer: Buffer): void {
    if (this.stopped) return this.maybeFinish();
    this.reading++;
    readCb(this.fd, buffer, 0, buffer.length, null, (error, n) => {
      this.reading--;
      if (error) {
        const errno = errnoOf(error);
        // ENOENT: the request was interrupted before we read it; EINTR/EAGAIN: retry.
        if (errno === Errno.ENOENT || errno === 4 || errno === Errno.EAGAIN) return this.readNext(buffer);
        if (errno !== Errno.ENODEV) this.log(`read /dev/fuse: ${(error as Error).message}`);
        this.stopped = true;
        return this.maybeFinish();
      }
      this.inFlight++;
      const request = buffer.subarray(0, n);
      let replied = false;
      const done = (reply: Uint8Array | null) => {
        if (replied) return;
        replied = true;
        if (reply) this.writeReply(reply);
        this.inFlight--;
        this.readNext(buffer);
      };
      if (FuseHandler.isForget(request)) {
        this.handler.forget(request);
        done(null);
      } else {
        this.handler.handle(request, done);
      }
    });
  }

  private writeReply(reply: Uint8Array): void {
    try {
      writeSync(this.fd, reply, 0, reply.length);
    } catch (error) {
      // ENOENT: the request was interrupted and the kernel no longer waits for it.
      if (errnoOf(error) !== Errno.ENOENT && errnoOf(error) !== Errno.ENODEV) this.log(`write /dev/fuse: ${(error as Error).message}`);
    }
  }

  private maybeFinish(): void {
    if (this.reading > 0 || this.inFlight > 0 || this.fd < 0) return;
    closeSync(this.fd);
    this.fd = -1;
    this.handler.closeAll();
    this.handler.union.close();
    this.resolveFinished();
  }

  /** Unmounts (the kernel flushes dirty data through us meanwhile); `lazy` detaches a busy mount. */
  unmount(lazy = false): Promise<boolean> {
    if (this.unmounting && !lazy) return Promise.resolve(true);
    this.unmounting = true;
    return new Promise((resolve) => {
      const child = spawn('umount', lazy ? ['-l', this.mountPoint] : [this.mountPoint], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('close', (code) => {
        if (code !== 0) {
          this.unmounting = false;
          this.log(`umount ${this.mountPoint}: ${stderr.trim() || `exit ${code}`}`);
        }
        resolve(code === 0);
      });
    });
  }
}
