// `novm vhost-user blk` inside a queue thread (see queue-thread.ts): the same BlkDevice and
// FileBlockBackend as in process. The backend's I/O is already synchronous (pread/pwrite into
// guest memory), so the thread saves the kick's hop through the main thread's event loop.
// Loaded by queue-thread-worker.ts through its `createHostedDevice` export.
import { FileBlockBackend } from '../virtio/devices/blk/block-backend.js';
import { BlkDevice } from '../virtio/devices/blk/blk-device.js';
import { VIRTIO_F_RING_PACKED } from '../virtio/queue/features.js';
import type { HostedDevice } from './queue-thread-protocol.js';

export interface HostedBlkOptions {
  readonly image: string;
  readonly readonly: boolean;
  readonly serial?: string;
  readonly queues: number;
  readonly packed: boolean;
}

export function createHostedDevice(options: unknown): HostedDevice {
  const o = options as HostedBlkOptions;
  const backend = new FileBlockBackend(o.image, o.readonly);
  const device = new BlkDevice(backend, { packedRing: o.packed, queues: o.queues, ...(o.serial === undefined ? {} : { serial: o.serial }) });
  return {
    device,
    summary: () => {
      const rings = (device.negotiatedFeatures & VIRTIO_F_RING_PACKED) !== 0n ? 'rings=packed' : 'rings=split';
      return `virtio-blk: ${rings} thread=queue ${Object.entries(device.stats).map(([k, v]) => `${k}=${v}`).join(' ')}`;
    },
    close: () => backend.close(),
  };
}
