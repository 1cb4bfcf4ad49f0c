// Shared state between a serving thread (the /dev/fuse loop, or a vhost-user fs queue thread) and
// its I/O worker threads: buffers, their ownership, and a ring of jobs. Every job holds a buffer
// (the /dev/fuse loop's request buffer it came in), so the ring never holds more jobs than there
// are buffers and a slot is never overwritten before it is taken. Data jobs (READ, WRITE, FSYNC)
// are answered by the worker itself. Metadata jobs (CREATE, MKDIR, COPY) only run the blocking
// system calls: the worker stores the result with the buffer, marks it DONE and signals the
// completion eventfd; the serving thread, which owns the file-system state, finishes the reply.
export const CONTROL_STOP = 0;
export const CONTROL_HEAD = 1;
export const CONTROL_TAIL = 2;
export const CONTROL_FREE_SEQ = 3;
/** Workers that have started (loaded their modules) and that have ended. */
export const CONTROL_STARTED = 4;
export const CONTROL_ENDED = 5;
const CONTROL_WORDS = 6;

export const BUFFER_FREE = 0;
export const BUFFER_LOOP = 1;
export const BUFFER_JOB = 2;
/** A metadata job's result is in `results`; the loop finishes the request and frees the buffer. */
export const BUFFER_DONE = 3;
/** Held by the loop for a request that waits (for a copy-up) to be handled again. */
export const BUFFER_PARKED = 4;

export const JOB_READ = 1;
export const JOB_WRITE = 2;
export const JOB_FSYNC = 3;
export const JOB_FDATASYNC = 4;
/** openat(fd, name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, mode), then fchownat(uid, gid) if asked. */
export const JOB_CREATE = 5;
/** mkdirat(fd, name, mode), then fchownat(uid, gid) if asked. */
export const JOB_MKDIR = 6;
/** Copies `size` bytes from one fd to another (copy-data.ts): the data of a large copy-up. */
export const JOB_COPY = 7;
/** Job words: op, fd, offset low, offset high, size, buffer, data offset, unique low, unique high.
 *  JOB_COPY: op, source fd, size low, size high, destination fd, buffer, 0, 0, 0.
 *  JOB_CREATE and JOB_MKDIR: op, dir fd, 0, mode, uid, buffer, name offset, gid, 1 to chown. */
export const JOB_WORDS = 9;

export const STAT_NODES = 0;
export const STAT_FDS = 1;
export const STAT_FILES = 2;
export const STAT_REQUESTS = 3;
export const STAT_ERRORS = 4;
export const STAT_UNEXPECTED = 5;
export const STAT_BACKING_FILES = 6;
const STAT_WORDS = 8;

export interface SharedQueueMemory {
  readonly buffers: SharedArrayBuffer;
  readonly control: SharedArrayBuffer;
  readonly states: SharedArrayBuffer;
  readonly jobFds: SharedArrayBuffer;
  readonly jobs: SharedArrayBuffer;
  readonly stats: SharedArrayBuffer;
  readonly results: SharedArrayBuffer;
  readonly count: number;
  readonly bufferSize: number;
  /** The eventfd workers write when a metadata job is DONE (-1: none). */
  readonly completionFd: number;
}

export function allocateSharedQueue(count: number, bufferSize: number, completionFd = -1): SharedQueueMemory {
  return {
    buffers: new SharedArrayBuffer(count * bufferSize),
    control: new SharedArrayBuffer(CONTROL_WORDS * 4),
    states: new SharedArrayBuffer(count * 4),
    jobFds: new SharedArrayBuffer(count * 4),
    jobs: new SharedArrayBuffer(count * JOB_WORDS * 4),
    stats: new SharedArrayBuffer(STAT_WORDS * 8),
    results: new SharedArrayBuffer(count * 4),
    count,
    bufferSize,
    completionFd,
  };
}

export class SharedQueue {
  readonly control: Int32Array;
  readonly states: Int32Array;
  readonly jobFds: Int32Array;
  readonly jobs: Int32Array;
  readonly stats: Float64Array;
  readonly results: Int32Array;
  readonly bytes: Uint8Array;
  readonly count: number;
  readonly bufferSize: number;

  constructor(readonly memory: SharedQueueMemory) {
    this.control = new Int32Array(memory.control);
    this.states = new Int32Array(memory.states);
    this.jobFds = new Int32Array(memory.jobFds);
    this.jobs = new Int32Array(memory.jobs);
    this.stats = new Float64Array(memory.stats);
    this.results = new Int32Array(memory.results);
    this.bytes = new Uint8Array(memory.buffers);
    this.count = memory.count;
    this.bufferSize = memory.bufferSize;
  }

  buffer(index: number): Uint8Array {
    return this.bytes.subarray(index * this.bufferSize, (index + 1) * this.bufferSize);
  }

  /** Loop side: a free buffer, waiting for an I/O worker to release one if all are busy;
   *  `collectDone` runs while waiting, since DONE buffers are freed by the loop itself. */
  acquire(collectDone?: () => boolean): number {
    for (;;) {
      const seq = Atomics.load(this.control, CONTROL_FREE_SEQ);
      const free = this.tryAcquire();
      if (free >= 0) return free;
      if (collectDone?.()) continue;
      Atomics.wait(this.control, CONTROL_FREE_SEQ, seq, 1000);
    }
  }

  /** Loop side: a free buffer now, or -1 (never waits). */
  tryAcquire(): number {
    for (let i = 0; i < this.count; i++) {
      if (Atomics.compareExchange(this.states, i, BUFFER_FREE, BUFFER_LOOP) === BUFFER_FREE) return i;
    }
    return -1;
  }

  /** Loop side: gives the buffer back unless a job took it. */
  releaseFromLoop(index: number): void {
    Atomics.compareExchange(this.states, index, BUFFER_LOOP, BUFFER_FREE);
  }

  /** Worker side: the job is done with its buffer. */
  releaseFromJob(index: number): void {
    Atomics.store(this.jobFds, index, -1);
    Atomics.store(this.states, index, BUFFER_FREE);
    Atomics.add(this.control, CONTROL_FREE_SEQ, 1);
    Atomics.notify(this.control, CONTROL_FREE_SEQ);
  }

  /** Worker side: a metadata job finished with `result`; the loop frees the buffer. */
  completeJob(index: number, result: number): void {
    Atomics.store(this.results, index, result);
    Atomics.store(this.jobFds, index, -1);
    Atomics.store(this.states, index, BUFFER_DONE);
    // Wakes a loop waiting in acquire() for a buffer: it must collect this one.
    Atomics.add(this.control, CONTROL_FREE_SEQ, 1);
    Atomics.notify(this.control, CONTROL_FREE_SEQ);
  }

  /** Loop side: the result of a DONE metadata job, or undefined while it runs. The buffer is the
   *  loop's again (its request may be handled again); releaseFromLoop frees it. */
  collect(index: number): number | undefined {
    if (Atomics.load(this.states, index) !== BUFFER_DONE) return undefined;
    const result = Atomics.load(this.results, index);
    Atomics.store(this.states, index, BUFFER_LOOP);
    return result;
  }

  /** Loop side: keeps buffer `index` (a waiting request) until unpark. */
  park(index: number): void {
    Atomics.store(this.states, index, BUFFER_PARKED);
  }

  /** Loop side: the parked buffer is the loop's again; releaseFromLoop frees it. */
  unpark(index: number): void {
    Atomics.store(this.states, index, BUFFER_LOOP);
  }

  /** Loop side: queues a JOB_COPY that takes over buffer `index` for its completion. */
  pushCopy(index: number, src: number, dst: number, size: number): void {
    this.pushWords(index, src, JOB_COPY, src, size >>> 0, Math.floor(size / 0x1_0000_0000), dst, index, 0, 0, 0);
  }

  allFree(): boolean {
    for (let i = 0; i < this.count; i++) if (Atomics.load(this.states, i) !== BUFFER_FREE) return false;
    return true;
  }

  /** True while a job on `fd` is in flight. */
  busy(fd: number): boolean {
    for (let i = 0; i < this.count; i++) if (Atomics.load(this.jobFds, i) === fd) return true;
    return false;
  }

  /** Loop side: queues a job that takes over buffer `index`. */
  push(op: number, fd: number, offset: number, size: number, index: number, dataOffset: number, uniqueLow: number, uniqueHigh: number): void {
    this.pushWords(index, fd, op, fd, offset >>> 0, Math.floor(offset / 0x1_0000_0000), size, index, dataOffset, uniqueLow | 0, uniqueHigh | 0);
  }

  /** Loop side: queues a JOB_CREATE or JOB_MKDIR that takes over buffer `index` (the name lies in it). */
  pushMake(op: typeof JOB_CREATE | typeof JOB_MKDIR, index: number, dirFd: number, mode: number, uid: number, gid: number, chown: boolean, nameOffset: number): void {
    this.pushWords(index, dirFd, op, dirFd, 0, mode, uid | 0, index, nameOffset, gid | 0, chown ? 1 : 0);
  }

  /** Writes the JOB_WORDS words of a job holding buffer `index` (busy on `fd`) into the ring. */
  // Nine fixed parameters rather than an array: the data path allocates nothing per request.
  private pushWords(index: number, fd: number, w0: number, w1: number, w2: number, w3: number, w4: number, w5: number, w6: number, w7: number, w8: number): void {
    Atomics.store(this.jobFds, index, fd);
    Atomics.store(this.states, index, BUFFER_JOB);
    const head = Atomics.load(this.control, CONTROL_HEAD);
    const o = (head % this.count) * JOB_WORDS;
    const j = this.jobs;
    j[o] = w0;
    j[o + 1] = w1;
    j[o + 2] = w2;
    j[o + 3] = w3;
    j[o + 4] = w4;
    j[o + 5] = w5;
    j[o + 6] = w6;
    j[o + 7] = w7;
    j[o + 8] = w8;
    Atomics.store(this.control, CONTROL_HEAD, head + 1);
    Atomics.notify(this.control, CONTROL_HEAD, 1);
  }

  /** Worker side: claims the next job (its slot offset in `jobs`), or -1 once stopped and drained. */
  take(): number {
    for (;;) {
      const tail = Atomics.load(this.control, CONTROL_TAIL);
      const head = Atomics.load(this.control, CONTROL_HEAD);
      if (tail === head) {
        if (Atomics.load(this.control, CONTROL_STOP) !== 0) return -1;
        Atomics.wait(this.control, CONTROL_HEAD, head, 1000);
        continue;
      }
      if (Atomics.compareExchange(this.control, CONTROL_TAIL, tail, tail + 1) === tail) return (tail % this.count) * JOB_WORDS;
    }
  }

  stop(): void {
    Atomics.store(this.control, CONTROL_STOP, 1);
    Atomics.notify(this.control, CONTROL_HEAD);
  }
}
