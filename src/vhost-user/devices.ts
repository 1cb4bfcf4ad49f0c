// Which device model `novm vhost-user KIND` serves, built from command-line options.
import { InputError } from '../common/errors.js';
import { FileBlockBackend } from '../virtio/devices/blk/block-backend.js';
import { BlkDevice } from '../virtio/devices/blk/blk-device.js';
import { ConsoleDevice } from '../virtio/devices/console/console-device.js';
import { FsDevice } from '../virtio/devices/fs/fs-device.js';
import { RngDevice } from '../virtio/devices/rng/rng-device.js';
import { FuseHandler, UnionFs, configFromFlags } from '../fs/index.js';
import { openTapNetDevice } from '../virtio/devices/net/index.js';
import { openHybridVsockDevice } from '../virtio/devices/vsock/index.js';
import type { QueueDevice } from '../virtio/devices/queue-device.js';
import { VIRTIO_F_RING_PACKED } from '../virtio/queue/features.js';
import type { BackendDevice } from './backend.js';
import type { FdPoller } from './fd-poller.js';
import type { HostedBlkOptions } from './hosted-blk.js';
import type { HostedFsOptions } from './hosted-fs.js';
import { QueueThreadDevice, type QueueThreadOptions } from './queue-thread.js';

export const BACKEND_DEVICE_KINDS = ['rng', 'blk', 'console', 'fs', 'net', 'vsock'] as const;

export interface BackendDeviceOptions {
  readonly image?: string | undefined;
  readonly readonly?: boolean;
  readonly serial?: string | undefined;
  readonly queues?: number;
  readonly tag?: string;
  readonly read?: readonly string[];
  readonly write?: readonly string[];
  /** net: tap interface to create or attach to. */
  readonly tap?: string | undefined;
  /** vsock: the guest's context ID and the Unix socket standing for the guest. */
  readonly cid?: number | undefined;
  readonly uds?: string | undefined;
  /** Offer packed virtqueues (VIRTIO_F_RING_PACKED) as well as split ones. */
  readonly packed?: boolean;
  /** blk/fs on a queue thread: the longest busy-poll window (us; 0: off). */
  readonly pollUs?: number;
}

export interface OpenedDevice {
  /** One line of counters for `--stats`. */
  readonly summary?: () => string;
  readonly model: BackendDevice;
  close(): Promise<void>;
}

/** Builds the device model for `kind`; `poller` also watches the device's own descriptors (tap). */
export async function createBackendDevice(kind: string, options: BackendDeviceOptions, poller: FdPoller): Promise<OpenedDevice> {
  switch (kind) {
    case 'rng':
      const rng = new RngDevice({ packedRing: options.packed === true });
      return { model: rng, close: async () => {}, summary: () => `virtio-rng: ${ringLayout(rng)} bytes=${rng.bytesServed}` };
    case 'blk': {
      if (options.image === undefined) throw new InputError('vhost-user blk needs --image FILE');
      if (process.env['NOVM_BLK_QUEUE_THREAD'] !== '0') {
        // Served from a queue thread like fs (NOVM_BLK_QUEUE_THREAD=0: from the main thread).
        const hostedOptions: HostedBlkOptions = { image: options.image, readonly: options.readonly === true, queues: options.queues ?? 1, packed: options.packed === true, ...(options.serial === undefined ? {} : { serial: options.serial }) };
        const model = await QueueThreadDevice.start(new URL('./hosted-blk.js', import.meta.url), hostedOptions, threadOptions(options));
        return { model, close: () => model.close(), summary: () => model.summary() };
      }
      const backend = new FileBlockBackend(options.image, options.readonly === true);
      const model = new BlkDevice(backend, { packedRing: options.packed === true, queues: options.queues ?? 1, ...(options.serial === undefined ? {} : { serial: options.serial }) });
      return { model, close: async () => backend.close(), summary: () => `virtio-blk: ${ringLayout(model)} ${Object.entries(model.stats).map(([k, v]) => `${k}=${v}`).join(' ')}` };
    }
    case 'console': {
      // Port 0 is a console wired to this process's stdin/stdout.
      const model = new ConsoleDevice({ packedRing: options.packed === true, ports: [{ console: true }] });
      const port = model.ports[0]!;
      port.onData = (data) => process.stdout.write(Buffer.from(data));
      const onInput = (chunk: Buffer): void => {
        if (!port.write(chunk)) process.stdin.pause();
      };
      process.stdin.on('data', onInput);
      return { model, close: async () => void process.stdin.off('data', onInput).pause() };
    }
    case 'fs': {
      const tag = options.tag ?? 'novm';
      const requestQueues = options.queues ?? 1;
      if (process.env['NOVM_FS_QUEUE_THREAD'] !== '0') {
        // The device serves its rings from a thread of its own (queue-thread.ts): kicks wake it
        // directly and data I/O runs inline there. NOVM_FS_QUEUE_THREAD=0 keeps it on the main
        // thread (for side-by-side measurements).
        // No FUSE writeback cache by default: measured under QEMU TCG (bench:virtiofs), the guest's
        // own page-cache and writeback work cost more than one WRITE per write(2) (seqwrite-1m
        // 156 -> 285 IOPS; randwrite-4k 13.9k -> 8.9k, still ahead of virtiofsd's 5k). A guest on
        // hardware virtualization may prefer it: NOVM_FS_WRITEBACK=1.
        const writeback = process.env['NOVM_FS_WRITEBACK'] === '1';
        const hostedOptions: HostedFsOptions = { read: options.read ?? [], write: options.write ?? [], tag, requestQueues, packed: options.packed === true, writeback };
        const model = await QueueThreadDevice.start(new URL('./hosted-fs.js', import.meta.url), hostedOptions, threadOptions(options));
        return { model, close: () => model.close(), summary: () => model.summary() };
      }
      const config = configFromFlags(options.read ?? [], options.write ?? []);
      const union = new UnionFs(config);
      const handler = new FuseHandler(union);
      const model = new FsDevice(handler, { packedRing: options.packed === true, tag, requestQueues });
      return { model, close: async () => {}, summary: () => `virtio-fs: ${ringLayout(model)} ${Object.entries(model.stats).map(([k, v]) => `${k}=${v}`).join(' ')}` };
    }
    case 'net': {
      const net = openTapNetDevice({ ...(options.tap === undefined ? {} : { tap: options.tap }), readiness: poller });
      process.stderr.write(`novm vhost-user net: tap ${net.tap.name}\n`);
      return { model: net.device, close: async () => net.close() };
    }
    case 'vsock': {
      if (options.uds === undefined) throw new InputError('vhost-user vsock needs --uds PATH (guest port N connects to PATH_N)');
      const cid = options.cid ?? 3;
      if (!Number.isInteger(cid) || cid < 3 || cid > 0xffff_fffe) throw new InputError(`--cid must be an integer >= 3, got ${cid}`);
      const vsock = await openHybridVsockDevice({ guestCid: cid, udsPath: options.uds });
      return { model: vsock.device, close: () => vsock.close() };
    }
    default:
      if ((BACKEND_DEVICE_KINDS as readonly string[]).includes(kind)) throw new InputError(`vhost-user ${kind}: not implemented yet`);
      throw new InputError(`unknown device kind '${kind}' (expected one of: ${BACKEND_DEVICE_KINDS.join(', ')})`);
  }
}

function threadOptions(options: BackendDeviceOptions): QueueThreadOptions {
  return options.pollUs === undefined ? {} : { pollUs: options.pollUs };
}

function ringLayout(device: QueueDevice): string {
  return (device.negotiatedFeatures & VIRTIO_F_RING_PACKED) !== 0n ? 'rings=packed' : 'rings=split';
}
