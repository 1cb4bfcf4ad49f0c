// `novm vhost-user fs` inside a queue thread (see queue-thread.ts): the same FsDevice, FuseHandler
// and UnionFs as in process, with the data I/O done inline (SyncDataIo) because the thread is
// the device's own. Loaded by queue-thread-worker.ts through its `createHostedDevice` export.
import { SyncDataIo } from '../fs/data-io.js';
import { FuseHandler, UnionFs, configFromFlags } from '../fs/index.js';
import { FsDevice } from '../virtio/devices/fs/fs-device.js';
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

export function createHostedDevice(options: unknown): HostedDevice {
  const o = options as HostedFsOptions;
  const union = new UnionFs(configFromFlags(o.read, o.write));
  const handler = new FuseHandler(union, { dataIo: new SyncDataIo(), writebackCache: o.writeback });
  const device = new FsDevice(handler, { packedRing: o.packed, tag: o.tag, requestQueues: o.requestQueues, requestsPerRun: REQUESTS_PER_RUN });
  return {
    device,
    hasDeferredWork: () => device.hasDeferredWork,
    resumeDeferred: () => device.resumeQueues(),
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
      handler.closeAll();
      union.close();
    },
  };
}
