// The host transport: serves a FuseHandler over /dev/fuse at a host mount point.
//
// Threads: a loop thread (dev-fuse-loop.ts) blocks in read() on /dev/fuse and serves metadata and
// page-cache hits inline; I/O worker threads (io-worker.ts) take blocking data work (cache-missing
// reads, large writes, fsync) and reply themselves, and the inode creation of CREATE, so a slow
// request does not stall the others.
// This main thread only mounts, unmounts and watches: the mount uses `mount -i` with the fd passed
// to the child (HOST-NOTES); unmounting is asynchronous because the kernel flushes dirty pages
// through the loop while umount runs. The kernel reports the end of the mount with ENODEV.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { InputError } from '../common/errors.js';
import { getrlimit, RLIMIT_NOFILE, setrlimit } from '../native/fs-calls.js';
import * as libc from '../native/libc.js';
import { Errno, errnoOf } from './errors.js';
import { MAX_WRITE, REQUEST_BUFFER_SIZE } from './fuse-abi.js';
import { type FsConfig, isWithin, type ResolvedMount } from './config.js';
import { allocateSharedQueue, SharedQueue, STAT_BACKING_FILES, STAT_ERRORS, STAT_FDS, STAT_FILES, STAT_NODES, STAT_REQUESTS, STAT_UNEXPECTED } from './shared-queue.js';

export interface DevFuseOptions {
  /** I/O worker threads for blocking data work (default 4). */
  readonly ioWorkers?: number;
  /** Request buffers of 1 MiB + 4 KiB: the bound on requests in flight (default 32). */
  readonly buffers?: number;
  /** Use FUSE passthrough where the kernel offers it and this process may (default true). */
  readonly passthrough?: boolean;
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
export function checkMountPoint(mountPoint: string, mounts: readonly ResolvedMount[]): string {
  let real: string;
  try {
    real = realpathSync(mountPoint);
  } catch {
    throw new InputError(`mount point "${mountPoint}" does not exist`);
  }
  if (!statSync(real).isDirectory()) throw new InputError(`mount point "${mountPoint}" is not a directory`);
  const mounted = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((line) => line.split(' ')[4] === real);
  if (mounted) throw new InputError(`mount point "${mountPoint}" is already a mount point`);
  for (const m of mounts) {
    for (const layer of [...m.readOnly, ...(m.writable === null ? [] : [m.writable])]) {
      if (isWithin(real, layer) || isWithin(layer, real)) {
        throw new InputError(`mount point "${mountPoint}" overlaps layer "${layer}" (the server would serve itself)`);
      }
    }
  }
  return real;
}

/** Raises RLIMIT_NOFILE as far as allowed: every node the client holds is an O_PATH fd, so a tree
 *  of 20,000 files needs more than a typical hard limit. With CAP_SYS_RESOURCE (root) the hard
 *  limit itself goes up to the kernel's nr_open; otherwise the soft limit goes up to the hard. */
export function raiseFdLimit(): void {
  const lim = new BigUint64Array(2);
  if (getrlimit(RLIMIT_NOFILE, lim) !== 0) return;
  let ceiling = 0n;
  try {
    ceiling = BigInt(readFileSync('/proc/sys/fs/nr_open', 'utf8').trim());
  } catch {
    // No procfs: keep the hard limit.
  }
  if (ceiling > lim[1]!) {
    const wanted = BigUint64Array.of(ceiling, ceiling);
    if (setrlimit(RLIMIT_NOFILE, wanted) === 0) return;
  }
  if (lim[0]! < lim[1]!) {
    lim[0] = lim[1]!;
    setrlimit(RLIMIT_NOFILE, lim);
  }
}

export interface ServerStats {
  nodes: number;
  fds: number;
  files: number;
  requests: number;
  errors: number;
  unexpected: number;
  /** Host files registered as passthrough backing files. */
  backingFiles: number;
}

export class DevFuseServer {
  private fd = -1;
  /** Workers signal finished metadata jobs to the loop here (shared-queue.ts). */
  private completionFd = -1;
  private unmounting = false;
  private finished!: Promise<void>;
  private readonly log: (line: string) => void;
  private readonly ioWorkers: number;
  private queue: SharedQueue | null = null;
  private readonly workers: Worker[] = [];

  constructor(readonly config: FsConfig, readonly mountPoint: string, options: DevFuseOptions = {}) {
    this.log = options.log ?? ((line) => process.stderr.write(`novm fs: ${line}\n`));
    this.ioWorkers = options.ioWorkers ?? 4;
    this.buffers = options.buffers ?? 32;
    this.passthrough = options.passthrough ?? true;
    this.cacheTimeoutSeconds = config.cacheTimeoutSeconds ?? 1;
  }
  private readonly buffers: number;
  private readonly passthrough: boolean;
  private readonly cacheTimeoutSeconds: number;

  /** Opens /dev/fuse, mounts, and starts the serving threads. */
  mount(): void {
    try {
      this.fd = openSync('/dev/fuse', 'r+');
    } catch (error) {
      const errno = errnoOf(error);
      throw new InputError(`cannot open /dev/fuse: ${errno === Errno.EACCES || errno === Errno.EPERM ? 'permission denied' : (error as Error).message}`);
    }
    const options = `fd=3,rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions,max_read=${MAX_WRITE}`;
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
    this.raiseReadahead();
    this.completionFd = libc.check('eventfd', libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK));
    const memory = allocateSharedQueue(this.buffers, REQUEST_BUFFER_SIZE, this.completionFd);
    this.queue = new SharedQueue(memory);
    const exits: Promise<void>[] = [];
    const start = (file: string, data: unknown) => {
      const w = new Worker(new URL(file, import.meta.url), { workerData: data });
      this.workers.push(w);
      exits.push(new Promise((resolve) => {
        w.on('error', (error) => {
          this.log(`${file}: ${error.message}`);
          this.queue?.stop();
        });
        w.on('exit', () => resolve());
      }));
      return w;
    };
    for (let i = 0; i < this.ioWorkers; i++) start('./io-worker.js', { devFd: this.fd, queue: memory });
    const loop = start('./dev-fuse-loop.js', { devFd: this.fd, config: this.config, cacheTimeoutSeconds: this.cacheTimeoutSeconds, queue: memory, passthrough: this.passthrough });
    loop.on('exit', (code) => {
      // If the loop died, end the I/O workers too; a mount left behind is detached.
      this.queue?.stop();
      if (code !== 0) void this.unmount(true);
    });
    this.finished = Promise.all(exits).then(() => {
      if (this.fd >= 0) closeSync(this.fd);
      this.fd = -1;
      if (this.completionFd >= 0) libc.close(this.completionFd);
      this.completionFd = -1;
    });
  }

  /** The kernel starts a FUSE mount with the default 128 KiB read-ahead; READs of up to 1 MiB
   *  (max_pages) halve the round trips of sequential reads. Best effort: sysfs may be read-only. */
  private raiseReadahead(): void {
    try {
      // Never stat the mount point here: that would send a request to this very server before
      // its loop runs (a deadlock). The device number comes from mountinfo instead.
      const line = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === this.mountPoint);
      const dev = line?.split(' ')[2];
      if (dev && /^\d+:\d+$/.test(dev)) writeFileSync(`/sys/class/bdi/${dev}/read_ahead_kb`, String(MAX_WRITE / 1024));
    } catch {
      // Not fatal: reads still work with the default read-ahead.
    }
  }

  /** Resolves when the kernel has ended the session (after unmount) and every thread has exited. */
  get done(): Promise<void> {
    return this.finished;
  }

  stats(): ServerStats {
    const s = this.queue?.stats;
    if (!s) return { nodes: 0, fds: 0, files: 0, requests: 0, errors: 0, unexpected: 0, backingFiles: 0 };
    return { nodes: s[STAT_NODES]!, fds: s[STAT_FDS]!, files: s[STAT_FILES]!, requests: s[STAT_REQUESTS]!, errors: s[STAT_ERRORS]!, unexpected: s[STAT_UNEXPECTED]!, backingFiles: s[STAT_BACKING_FILES]! };
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
