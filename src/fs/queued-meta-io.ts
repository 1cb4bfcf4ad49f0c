// MetaIo over the I/O worker threads (io-worker.ts) and their SharedQueue: the blocking half of
// CREATE, MKDIR and large copy-ups runs on a worker; the worker marks the job's buffer DONE and
// signals the completion eventfd; the serving thread, which owns the file-system state, polls that
// eventfd beside its request source and calls collect(), which finishes the requests.
//
// Two serving threads use it:
// - the /dev/fuse loop (QueuedMetaIo): requests already sit in the queue's shared buffers, so a
//   job takes over the request's own buffer (the Cursor says which) and names are read in place;
// - a virtio-fs queue thread (StagedMetaIo): requests live in the device's slots, so a job takes
//   any free buffer and the name is copied into it; with none free the job runs inline.
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
   *  creates anything). */
  constructor(queue: SharedQueue, private readonly startWorkers: () => void) {
    super(queue);
  }

  create(dirFd: number, name: Uint8Array, mode: number, owner: NewOwner, done: Done): void {
    const buffer = this.stage(name);
    if (buffer < 0) return done(makeEntry('file', dirFd, name, mode, owner));
    this.track(buffer, done);
    this.queue.pushMake(JOB_CREATE, buffer, dirFd, mode, owner.uid, owner.gid, owner.chown, buffer * this.queue.bufferSize);
  }
  mkdir(dirFd: number, name: Uint8Array, mode: number, owner: NewOwner, done: Done): void {
    const buffer = this.stage(name);
    if (buffer < 0) return done(makeEntry('dir', dirFd, name, mode, owner));
    this.track(buffer, done);
    this.queue.pushMake(JOB_MKDIR, buffer, dirFd, mode, owner.uid, owner.gid, owner.chown, buffer * this.queue.bufferSize);
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

  /** A free buffer holding `name` NUL-terminated, or -1 when none is free or it does not fit. */
  private stage(name: Uint8Array): number {
    if (name.length > this.queue.bufferSize) return -1;
    const buffer = this.slot();
    if (buffer < 0) return -1;
    const at = buffer * this.queue.bufferSize;
    this.queue.bytes.set(name, at);
    if (name[name.length - 1] !== 0) {
      if (name.length === this.queue.bufferSize) {
        this.queue.releaseFromLoop(buffer);
        return -1;
      }
      this.queue.bytes[at + name.length] = 0;
    }
    return buffer;
  }
}
