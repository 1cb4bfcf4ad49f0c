// MetaIo over the I/O worker threads (io-worker.ts) and their SharedQueue: the blocking half of
// CREATE, MKDIR and large copy-ups runs on a worker; the worker marks the job's buffer DONE and
// signals the completion eventfd; the serving thread, which owns the file-system state, polls that
// eventfd beside its request source and calls collect(), which finishes the requests.
//
// Two serving threads use it:
// - the /dev/fuse loop (QueuedMetaIo): requests already sit in the queue's shared buffers, so a
//   job takes over the request's own buffer (the Cursor says which) and names are read in place;
// - a virtio-fs queue thread (StagedMetaIo): requests live in the device's slots, so a job takes
//   any free buffer (with none free it runs inline); only large copy-ups go out, inode creation
//   stays inline (measured below).
import { DataCopier } from './copy-data.js';
import { errnoOf } from './errors.js';
import { makeEntry } from './make-entry.js';
import type { MetaIo, NewOwner } from './meta-io.js';
import { JOB_CREATE, JOB_MKDIR, type SharedQueue } from './shared-queue.js';

/** The request buffer the /dev/fuse loop is handling now: the one a queued job takes over. */
export interface Cursor {
  buffer: number;
}

type Done = (result: number) => void;

/** Jobs out on the workers and the code that finishes each. */
abstract class WorkerMetaIo implements MetaIo {
  private readonly waiting: Array<{ buffer: number; done: Done }> = [];
  constructor(protected readonly queue: SharedQueue) {}

  get pending(): number {
    return this.waiting.length;
  }

  abstract create(dirFd: number, name: Uint8Array, mode: number, owner: NewOwner, done: Done): void;
  abstract mkdir(dirFd: number, name: Uint8Array, mode: number, owner: NewOwner, done: Done): void;
  abstract copyData(src: number, dst: number, size: number, done: Done): void;
  abstract park(): (resume: () => void) => void;

  protected track(buffer: number, done: Done): void {
    this.waiting.push({ buffer, done });
  }

  /** Finishes every job that is done; true if any was. */
  collect(): boolean {
    let any = false;
    for (let i = 0; i < this.waiting.length; ) {
      const job = this.waiting[i]!;
      const result = this.queue.collect(job.buffer);
      if (result === undefined) {
        i++;
        continue;
      }
      this.waiting.splice(i, 1);
      any = true;
      this.finish(job.buffer, () => job.done(result));
    }
    return any;
  }

  /** Runs a job's completion; the buffer is the loop's (BUFFER_LOOP) until released. */
  protected abstract finish(buffer: number, complete: () => void): void;
}

/** For the /dev/fuse loop: jobs take over the request's buffer; see the file comment. */
export class QueuedMetaIo extends WorkerMetaIo {
  constructor(queue: SharedQueue, private readonly cursor: Cursor) {
    super(queue);
  }
  create(dirFd: number, name: Uint8Array, mode: number, owner: NewOwner, done: Done): void {
    this.track(this.cursor.buffer, done);
    this.queue.pushMake(JOB_CREATE, this.cursor.buffer, dirFd, mode, owner.uid, owner.gid, owner.chown, name.byteOffset);
  }
  mkdir(dirFd: number, name: Uint8Array, mode: number, owner: NewOwner, done: Done): void {
    this.track(this.cursor.buffer, done);
    this.queue.pushMake(JOB_MKDIR, this.cursor.buffer, dirFd, mode, owner.uid, owner.gid, owner.chown, name.byteOffset);
  }
  copyData(src: number, dst: number, size: number, done: Done): void {
    this.track(this.cursor.buffer, done);
    this.queue.pushCopy(this.cursor.buffer, src, dst, size);
  }
  park(): (resume: () => void) => void {
    const buffer = this.cursor.buffer;
    this.queue.park(buffer);
    return (resume) => {
      this.queue.unpark(buffer);
      this.finish(buffer, resume);
    };
  }
  /** Runs `complete` with `buffer` as the current request's (its request may be handled again and
   *  queue a data job with it), then frees the buffer unless a job took it. */
  protected finish(buffer: number, complete: () => void): void {
    const previous = this.cursor.buffer;
    this.cursor.buffer = buffer;
    try {
      complete();
    } finally {
      this.cursor.buffer = previous;
      this.queue.releaseFromLoop(buffer);
    }
  }
}

/** For a thread whose requests live outside the shared buffers; see the file comment. */
export class StagedMetaIo extends WorkerMetaIo {
  private readonly copier = new DataCopier();
  private started = false;

  /** `startWorkers` runs before the first job is queued (no threads for a device that never
   *  copies a large file up). */
  constructor(queue: SharedQueue, private readonly startWorkers: () => void) {
    super(queue);
  }

  // Inode creation stays on the serving thread here, like the rest of its data I/O (SyncDataIo):
  // bench:virtiofs's serial metadata loop (TCG guest, best of 3) could not tell the hand-off to a
  // worker from inline (novm 650-800 ms in three runs against 570-870 ms in four), so the
  // simpler path is kept; a guest's creates in one directory are serialized by its kernel anyway.
  create(dirFd: number, name: Uint8Array, mode: number, owner: NewOwner, done: Done): void {
    done(makeEntry('file', dirFd, name, mode, owner));
  }
  mkdir(dirFd: number, name: Uint8Array, mode: number, owner: NewOwner, done: Done): void {
    done(makeEntry('dir', dirFd, name, mode, owner));
  }
  copyData(src: number, dst: number, size: number, done: Done): void {
    const buffer = this.slot();
    if (buffer < 0) {
      try {
        this.copier.copy(src, dst, size);
        return done(0);
      } catch (error) {
        return done(-errnoOf(error));
      }
    }
    this.track(buffer, done);
    this.queue.pushCopy(buffer, src, dst, size);
  }
  park(): (resume: () => void) => void {
    // The device keeps the request's bytes until it is answered.
    return (resume) => resume();
  }
  protected finish(buffer: number, complete: () => void): void {
    try {
      complete();
    } finally {
      this.queue.releaseFromLoop(buffer);
    }
  }

  /** A free buffer for a job (workers started), or -1. */
  private slot(): number {
    const buffer = this.queue.tryAcquire();
    if (buffer >= 0 && !this.started) {
      this.started = true;
      this.startWorkers();
    }
    return buffer;
  }
}
