// `novm vhost-user fs` inside a queue thread (see queue-thread.ts): the same FsDevice, FuseHandler
// and UnionFs as in process, with the data I/O done inline (SyncDataIo) because the thread is
// the device's own, and large copy-ups on an I/O worker (StagedMetaIo). Loaded by queue-thread-worker.ts through its `createHostedDevice` export.
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { Worker } from 'node:worker_threads';
import { SyncDataIo } from '../fs/data-io.js';
import { StagedMetaIo } from '../fs/queued-meta-io.js';
import { allocateSharedQueue, CONTROL_ENDED, CONTROL_FREE_SEQ, CONTROL_STARTED, SharedQueue } from '../fs/shared-queue.js';
import * as libc from '../native/libc.js';
import { FuseHandler, UnionFs, configFromFlags } from '../fs/index.js';
import { FsDevice } from '../virtio/devices/fs/fs-device.js';
import { warmUpFs } from '../virtio/devices/fs/fs-warm-up.js';
import { VIRTIO_F_RING_PACKED } from '../virtio/queue/features.js';
import type { HostedDevice } from './queue-thread-protocol.js';

export interface HostedFsOptions {
  readonly read: readonly string[];
  readonly write: readonly string[];
  readonly tag: string;
  readonly requestQueues: number;
  readonly packed: boolean;
  /** Offer FUSE_WRITEBACK_CACHE. */
  readonly writeback: boolean;
}

/** A queue run yields after this many requests, so a command from the main thread (which
 *  blocks until it is applied) waits for at most that many, however busy the guest keeps the ring. */
const REQUESTS_PER_RUN = 64;

/** The JIT warm-up before the guest's first request (fs-warm-up.ts): at most this many rounds
 *  of its mix (~16 requests each; the first ~3,000 requests are the slow ones) or this long. */
const WARM_UP_ROUNDS = 200;
const WARM_UP_MAX_MS = 2000;

/** Copy-ups out at once (each holds a shared buffer only as its completion slot). */
const META_JOBS = 8;
const META_BUFFER_BYTES = 8;

export function createHostedDevice(options: unknown): HostedDevice {
  const o = options as HostedFsOptions;
  const union = new UnionFs(configFromFlags(o.read, o.write));
  // Large copy-ups run on an I/O worker; the queue thread serves other requests meanwhile and
  // finishes them when the completion eventfd fires (inode creation stays inline: StagedMetaIo).
  const completionFd = libc.check('eventfd', libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK));
  const memory = allocateSharedQueue(META_JOBS, META_BUFFER_BYTES, completionFd);
  const queue = new SharedQueue(memory);
  let workers = 0;
  const meta = new StagedMetaIo(queue, () => {
    new Worker(new URL('../fs/io-worker.js', import.meta.url), { workerData: { devFd: -1, queue: memory } }).unref();
    workers++;
  });
  /** Stops the I/O worker once it runs: a thread torn down while it still loads its native
   *  modules aborts the process, so this waits for its start, then for its end. */
  const stopWorkers = (): void => {
    const waitFor = (slot: number): void => {
      const deadline = Date.now() + 10_000;
      for (let seen = Atomics.load(queue.control, slot); seen < workers && Date.now() < deadline; seen = Atomics.load(queue.control, slot)) {
        Atomics.wait(queue.control, slot, seen, 100);
      }
    };
    waitFor(CONTROL_STARTED);
    queue.stop();
    waitFor(CONTROL_ENDED);
  };
  // Requests finished here complete outside a queue run: signal them at once (this thread never
  // returns to the event loop FsDevice would otherwise wait for).
  const collect = (): void => {
    if (meta.collect()) device.flushCompletions();
  };
  const drain = (): void => {
    while (meta.pending > 0) {
      const seq = Atomics.load(queue.control, CONTROL_FREE_SEQ);
      collect();
      if (meta.pending > 0) Atomics.wait(queue.control, CONTROL_FREE_SEQ, seq, 100);
    }
  };
  // FORGETs are read at each wake-up instead of kicking this thread (NOVM_FS_LAZY_FORGET=0: off, for A/B runs).
  const lazyForgets = process.env['NOVM_FS_LAZY_FORGET'] !== '0';
  /** The handler and device over a union: the real ones, and the warm-up's (same code, same feedback). */
  const build = (over: UnionFs): { handler: FuseHandler; device: FsDevice } => {
    const handler = new FuseHandler(over, { dataIo: new SyncDataIo(), metaIo: meta, writebackCache: o.writeback });
    return { handler, device: new FsDevice(handler, { packedRing: o.packed, tag: o.tag, requestQueues: o.requestQueues, requestsPerRun: REQUESTS_PER_RUN, lazyForgets }) };
  };
  const { handler, device } = build(union);
  const warmUp = (shouldStop: () => boolean): string => {
    const result = warmUpFs((directory) => {
      const scratch = new UnionFs(configFromFlags([], [`/=${directory}`]));
      const built = build(scratch);
      return { device: built.device, close: () => { built.handler.closeAll(); scratch.close(); } };
    }, { scratchParent: existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), rounds: WARM_UP_ROUNDS, maxMs: WARM_UP_MAX_MS, shouldStop });
    if (result.unexpected > 0) process.stderr.write(`novm fs: JIT warm-up got ${result.unexpected} unexpected replies in ${result.requests} requests (first: ${result.firstUnexpected})\n`);
    return `warmUpRequests=${result.requests} warmUpMs=${result.ms.toFixed(0)}`;
  };
  return {
    device,
    completionFd,
    onCompletion: collect,
    drain,
    hasDeferredWork: () => device.hasDeferredWork,
    quietQueues: { pending: () => device.forgetsPending, poll: () => device.pollForgets(), settle: () => device.settleForgets() },
    resumeDeferred: () => device.resumeQueues(),
    // NOVM_FS_WARM_UP=0: no warm-up (for A/B runs).
    ...(process.env['NOVM_FS_WARM_UP'] === '0' ? {} : { warmUp }),
    summary: () => {
      const rings = (device.negotiatedFeatures & VIRTIO_F_RING_PACKED) !== 0n ? 'rings=packed' : 'rings=split';
      return `virtio-fs: ${rings} thread=queue ${Object.entries(device.stats).map(([k, v]) => `${k}=${typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(1) : v}`).join(' ')}`;
    },
    close: () => {
      const p = handler.profile;
      if (p !== null) {
        const rows = [...p.count.keys()].filter((op) => p.count[op]! > 0).map((op) => `op ${op}: ${p.count[op]} requests, ${(p.nanos[op]! / p.count[op]! / 1000).toFixed(1)} us each`);
        process.stderr.write(`novm fs: profile\n${rows.join('\n')}\n`);
      }
      drain();
      stopWorkers();
      handler.closeAll();
      union.close();
      libc.close(completionFd);
    },
  };
}
