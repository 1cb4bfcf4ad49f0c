// An I/O worker thread: takes jobs queued by a serving thread (the /dev/fuse loop, or a vhost-user
// fs queue thread for its copy-ups) and does the blocking system calls. Data jobs (pread, pwrite,
// fsync; /dev/fuse only) write their reply to /dev/fuse themselves; a metadata job (CREATE, MKDIR,
// a large copy-up's data) hands its result back to the serving thread, which owns the
// file-system state (shared-queue.ts).
import { parentPort, workerData } from 'node:worker_threads';
import { fdatasync, fsync, lastErrno, pread, pwrite, writeFd } from '../native/fs-calls.js';
import * as libc from '../native/libc.js';
import { DataCopier } from './copy-data.js';
import { Errno, errnoOf } from './errors.js';
import { makeEntry } from './make-entry.js';
import { MAX_WRITE, OUT_HEADER_SIZE } from './fuse-abi.js';
import { CONTROL_ENDED, CONTROL_STARTED, JOB_COPY, JOB_CREATE, JOB_MKDIR, JOB_FDATASYNC, JOB_FSYNC, JOB_READ, JOB_WRITE, SharedQueue, type SharedQueueMemory } from './shared-queue.js';

export interface IoWorkerData {
  readonly devFd: number;
  readonly queue: SharedQueueMemory;
}

function run(data: IoWorkerData): void {
  const queue = new SharedQueue(data.queue);
  Atomics.add(queue.control, CONTROL_STARTED, 1);
  Atomics.notify(queue.control, CONTROL_STARTED);
  try {
    serveJobs(data, queue);
  } finally {
    Atomics.add(queue.control, CONTROL_ENDED, 1);
    Atomics.notify(queue.control, CONTROL_ENDED);
  }
}

function serveJobs(data: IoWorkerData, queue: SharedQueue): void {
  const reply = new Uint8Array(OUT_HEADER_SIZE + MAX_WRITE);
  const out = new DataView(reply.buffer);
  const replyData = reply.subarray(OUT_HEADER_SIZE);
  const jobs = queue.jobs;
  const one = new Uint8Array(8);
  one[0] = 1;
  for (;;) {
    const o = queue.take();
    if (o < 0) return;
    const op = jobs[o]!;
    if (op === JOB_CREATE || op === JOB_MKDIR || op === JOB_COPY) {
      queue.completeJob(jobs[o + 5]!, op === JOB_COPY ? copy(jobs, o) : make(op, queue, jobs, o));
      libc.write(queue.memory.completionFd, one, 8);
      continue;
    }
    const fd = jobs[o + 1]!;
    const offset = (jobs[o + 2]! >>> 0) + jobs[o + 3]! * 0x1_0000_0000;
    const size = jobs[o + 4]!;
    const buffer = jobs[o + 5]!;
    const dataOffset = jobs[o + 6]!;
    out.setUint32(8, jobs[o + 7]! >>> 0, true);
    out.setUint32(12, jobs[o + 8]! >>> 0, true);
    let error = 0;
    let length = OUT_HEADER_SIZE;
    if (op === JOB_READ) {
      let done = 0;
      while (done < size) {
        const n = pread(fd, replyData.subarray(done, size), size - done, offset + done);
        if (n < 0) {
          if (lastErrno() === 4) continue;
          error = lastErrno();
          break;
        }
        if (n === 0) break;
        done += n;
      }
      length += done;
    } else if (op === JOB_WRITE) {
      const bytes = queue.bytes.subarray(dataOffset, dataOffset + size);
      let done = 0;
      while (done < size) {
        const n = pwrite(fd, bytes.subarray(done), size - done, offset + done);
        if (n < 0) {
          if (lastErrno() === 4) continue;
          error = lastErrno();
          break;
        }
        done += n;
      }
      if (error === 0 || done > 0) {
        error = 0;
        out.setUint32(OUT_HEADER_SIZE, done, true);
        out.setUint32(OUT_HEADER_SIZE + 4, 0, true);
        length += 8;
      }
    } else if (op === JOB_FSYNC || op === JOB_FDATASYNC) {
      if ((op === JOB_FSYNC ? fsync(fd) : fdatasync(fd)) < 0) error = lastErrno();
    } else {
      error = Errno.EINVAL;
    }
    if (error !== 0) length = OUT_HEADER_SIZE;
    out.setUint32(0, length, true);
    out.setInt32(4, -error, true);
    // The reply goes out before the buffer is released: a RELEASE cannot overtake it.
    writeFd(data.devFd, reply, length);
    queue.releaseFromJob(buffer);
  }
}

/** JOB_CREATE: the new file's fd; JOB_MKDIR: 0; or -errno. The name is NUL-terminated in the
 *  queue's buffers. */
function make(op: number, queue: SharedQueue, jobs: Int32Array, o: number): number {
  const owner = { uid: jobs[o + 4]!, gid: jobs[o + 7]!, chown: jobs[o + 8] === 1 };
  return makeEntry(op === JOB_CREATE ? 'file' : 'dir', jobs[o + 1]!, queue.bytes.subarray(jobs[o + 6]!), jobs[o + 3]!, owner);
}

const copier = new DataCopier();

/** JOB_COPY: 0 or -errno. */
function copy(jobs: Int32Array, o: number): number {
  try {
    copier.copy(jobs[o + 1]!, jobs[o + 4]!, (jobs[o + 2]! >>> 0) + (jobs[o + 3]! >>> 0) * 0x1_0000_0000);
    return 0;
  } catch (error) {
    return -errnoOf(error);
  }
}

if (parentPort) {
  run(workerData as IoWorkerData);
  parentPort.postMessage('done');
}
