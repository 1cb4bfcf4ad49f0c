// The /dev/fuse serving loop, run in a worker thread: a blocking read() of the next request (the
// kernel wakes this thread directly, as it would a C server), the handler, a write() of the reply.
// Metadata and page-cache hits complete inline; blocking data work (cache-missing reads, large
// writes, fsync) is queued to the I/O workers (io-worker.ts), which reply on their own, so a slow
// request never holds up the loop; so are the inode creation of CREATE and MKDIR and the data of
// large copy-ups, whose results come back through an eventfd for the loop to finish
// (queued-meta-io.ts). The loop ends when the kernel reports ENODEV.
import { parentPort, workerData } from 'node:worker_threads';
import { CAP_FSETID, capget, capset, LINUX_CAPABILITY_VERSION_3, lastErrno, readFd, writeFd } from '../native/fs-calls.js';
import * as libc from '../native/libc.js';
import { POLLIN, poll } from '../native/socket-calls.js';
import type { FsConfig } from './config.js';
import type { DataIo, DataReply, Unique } from './data-io.js';
import { Errno } from './errors.js';
import { FUSE_DEV_IOC_BACKING_CLOSE, FUSE_DEV_IOC_BACKING_OPEN } from './fuse-abi.js';
import { FuseHandler } from './fuse-handler.js';
import type { BackingFiles } from './passthrough.js';
import { type Cursor, QueuedMetaIo } from './queued-meta-io.js';
import { CONTROL_FREE_SEQ, JOB_FDATASYNC, JOB_FSYNC, JOB_READ, JOB_WRITE, SharedQueue, type SharedQueueMemory, STAT_BACKING_FILES, STAT_ERRORS, STAT_FDS, STAT_FILES, STAT_NODES, STAT_REQUESTS, STAT_UNEXPECTED } from './shared-queue.js';
import { UnionFs } from './union.js';

export interface LoopWorkerData {
  readonly devFd: number;
  readonly config: FsConfig;
  readonly cacheTimeoutSeconds: number;
  readonly queue: SharedQueueMemory;
  readonly passthrough: boolean;
}

/**
 * Passthrough backing files registered on this /dev/fuse connection. The kernel does the I/O of a
 * passthrough file with the credentials of the thread that registered it; a write through them
 * clears set-user-ID/set-group-ID bits only without CAP_FSETID. So this thread registers with
 * CAP_FSETID dropped from its effective set (restored at once), and unprivileged clients' writes
 * clear those bits as they would on the host. Root's writes clear them too (stricter than a
 * native file system, never looser).
 */
function backingFilesOf(devFd: number): BackingFiles {
  const map = new Uint8Array(16);
  const mapView = new DataView(map.buffer);
  const id = new Uint32Array(1);
  const header = Uint32Array.of(LINUX_CAPABILITY_VERSION_3, 0);
  const caps = new Uint32Array(6);
  const withoutFsetid = new Uint32Array(6);
  const haveCaps = capget(header, caps) === 0;
  withoutFsetid.set(caps);
  withoutFsetid[0] = caps[0]! & ~(1 << CAP_FSETID);
  return {
    open(fd) {
      mapView.setInt32(0, fd, true); // struct fuse_backing_map: fd, flags 0, padding 0
      // Without the capability sets the credentials would be wrong: serve the file ourselves.
      if (!haveCaps || capset(header, withoutFsetid) !== 0) return -Errno.EPERM;
      const r = libc.ioctlPtr(devFd, FUSE_DEV_IOC_BACKING_OPEN, map);
      const errno = r > 0 ? 0 : lastErrno();
      capset(header, caps);
      return r > 0 ? r : -errno;
    },
    close(backingId) {
      id[0] = backingId;
      libc.ioctlPtr(devFd, FUSE_DEV_IOC_BACKING_CLOSE, id);
    },
  };
}

/** Hands blocking data work to the I/O workers; the request buffer goes with the job. */
class QueuedDataIo implements DataIo {
  constructor(private readonly queue: SharedQueue, private readonly cursor: Cursor) {}
  busy(fd: number): boolean {
    return this.queue.busy(fd);
  }
  read(fd: number, offset: number, size: number, unique: Unique, _done: DataReply): void {
    this.queue.push(JOB_READ, fd, offset, size, this.cursor.buffer, 0, unique.low, unique.high);
  }
  write(fd: number, data: Uint8Array, offset: number, unique: Unique, _done: DataReply): void {
    this.queue.push(JOB_WRITE, fd, offset, data.length, this.cursor.buffer, data.byteOffset, unique.low, unique.high);
  }
  fsync(fd: number, datasync: boolean, unique: Unique, _done: DataReply): void {
    this.queue.push(datasync ? JOB_FDATASYNC : JOB_FSYNC, fd, 0, 0, this.cursor.buffer, 0, unique.low, unique.high);
  }
}

function serve(data: LoopWorkerData): void {
  const queue = new SharedQueue(data.queue);
  const union = new UnionFs(data.config);
  const cursor: Cursor = { buffer: 0 };
  const io = new QueuedDataIo(queue, cursor);
  const log = (line: string) => process.stderr.write(`novm fs: ${line}\n`);
  // Writeback and read-ahead may hold at most all but 4 request buffers: the rest stay free for
  // the requests of other processes while a large flush saturates the I/O threads.
  const meta = new QueuedMetaIo(queue, cursor);
  const handler = new FuseHandler(union, {
    cacheTimeoutSeconds: data.cacheTimeoutSeconds, dataIo: io, metaIo: meta, log, maxBackground: Math.max(1, queue.count - 4),
    ...(data.passthrough ? { backingFiles: backingFilesOf(data.devFd) } : {}),
  });
  const fd = data.devFd;
  const completionFd = queue.memory.completionFd;
  // poll(2) set: /dev/fuse and the completion eventfd. Only used while metadata jobs are out:
  // otherwise the loop blocks in read() alone, one system call per request.
  const pollSet = new Uint8Array(16);
  const pollView = new DataView(pollSet.buffer);
  pollView.setInt32(0, fd, true);
  pollView.setInt16(4, POLLIN, true);
  pollView.setInt32(8, completionFd, true);
  pollView.setInt16(12, POLLIN, true);
  const counter = new Uint8Array(8);
  /** Waits until /dev/fuse has a request, finishing metadata jobs meanwhile. */
  const waitForRequest = (): void => {
    while (meta.pending > 0) {
      pollView.setInt16(6, 0, true);
      pollView.setInt16(14, 0, true);
      if (poll(pollSet, 2, -1) < 0) return;
      if (pollView.getInt16(14, true) !== 0) {
        libc.read(completionFd, counter, 8);
        meta.collect();
      }
      if (pollView.getInt16(6, true) !== 0) return;
    }
  };
  const collectDone = (): boolean => meta.collect();
  const views: Uint8Array[] = [];
  for (let i = 0; i < queue.count; i++) views.push(queue.buffer(i));
  const reply = (r: Uint8Array | null) => {
    if (r && writeFd(fd, r, r.length) < 0) {
      const errno = lastErrno();
      // ENOENT: the request was interrupted and nobody waits for the reply any more.
      if (errno !== Errno.ENOENT && errno !== Errno.ENODEV) log(`write /dev/fuse: errno ${errno}`);
    }
  };
  const stats = queue.stats;
  for (;;) {
    waitForRequest();
    const b = queue.acquire(collectDone);
    const buffer = views[b]!;
    const n = readFd(fd, buffer, buffer.length);
    if (n < 0) {
      const errno = lastErrno();
      queue.releaseFromLoop(b);
      if (errno === Errno.ENOENT || errno === 4 || errno === Errno.EAGAIN) continue;
      if (errno !== Errno.ENODEV) log(`read /dev/fuse: errno ${errno}`);
      break;
    }
    const request = buffer.subarray(0, n);
    cursor.buffer = b;
    if (FuseHandler.isForget(request)) handler.forget(request);
    else handler.handle(request, reply);
    queue.releaseFromLoop(b);
    const m = handler.metrics;
    stats[STAT_NODES] = union.nodes.size;
    stats[STAT_FDS] = union.openFdCount;
    stats[STAT_FILES] = m.openFiles;
    stats[STAT_REQUESTS] = m.requests;
    stats[STAT_ERRORS] = m.errors;
    stats[STAT_UNEXPECTED] = m.unexpected;
    stats[STAT_BACKING_FILES] = m.backingFiles;
  }
  if (handler.profile) {
    const p = handler.profile;
    const rows = [...p.count.keys()].filter((op) => p.count[op]! > 0).map((op) => `op ${op}: ${p.count[op]} requests, ${(p.nanos[op]! / p.count[op]! / 1000).toFixed(1)} us each`);
    log(`profile\n${rows.join('\n')}`);
  }
  queue.stop();
  // Jobs still out finish (their replies go nowhere); bounded, since requests handled again after
  // a copy-up could queue work that the stopped workers no longer take.
  const deadline = Date.now() + 10_000;
  while (!queue.allFree() && Date.now() < deadline) {
    meta.collect();
    Atomics.wait(queue.control, CONTROL_FREE_SEQ, Atomics.load(queue.control, CONTROL_FREE_SEQ), 100);
  }
  handler.closeAll();
  union.close();
}

if (parentPort) {
  serve(workerData as LoopWorkerData);
  parentPort.postMessage('done');
}
