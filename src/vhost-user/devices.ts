// Which device model `novm vhost-user KIND` serves, built from command-line options.
import { InputError } from '../common/errors.js';
import { FileBlockBackend } from '../virtio/devices/blk/block-backend.js';
import { BlkDevice } from '../virtio/devices/blk/blk-device.js';
import { ConsoleDevice } from '../virtio/devices/console/console-device.js';
import { FsDevice } from '../virtio/devices/fs/fs-device.js';
import { RngDevice } from '../virtio/devices/rng/rng-device.js';
import { FuseHandler, UnionFs, configFromFlags } from '../fs/index.js';
import type { BackendDevice } from './backend.js';

export const BACKEND_DEVICE_KINDS = ['rng', 'blk', 'console', 'fs', 'net', 'vsock'] as const;

export interface BackendDeviceOptions {
  readonly image?: string | undefined;
  readonly readonly?: boolean;
  readonly serial?: string | undefined;
  readonly queues?: number;
  readonly tag?: string;
  readonly read?: readonly string[];
  readonly write?: readonly string[];
}

export interface OpenedDevice {
  readonly model: BackendDevice;
  close(): Promise<void>;
}

export async function createBackendDevice(kind: string, options: BackendDeviceOptions): Promise<OpenedDevice> {
  switch (kind) {
    case 'rng':
      return { model: new RngDevice(), close: async () => {} };
    case 'blk': {
      if (options.image === undefined) throw new InputError('vhost-user blk needs --image FILE');
      const backend = new FileBlockBackend(options.image, options.readonly === true);
      const model = new BlkDevice(backend, { queues: options.queues ?? 1, ...(options.serial === undefined ? {} : { serial: options.serial }) });
      return { model, close: async () => backend.close() };
    }
    case 'console': {
      // Port 0 is a console wired to this process's stdin/stdout.
      const model = new ConsoleDevice({ ports: [{ console: true }] });
      const port = model.ports[0]!;
      port.onData = (data) => process.stdout.write(Buffer.from(data));
      const onInput = (chunk: Buffer): void => {
        if (!port.write(chunk)) process.stdin.pause();
      };
      process.stdin.on('data', onInput);
      return { model, close: async () => void process.stdin.off('data', onInput).pause() };
    }
    case 'fs': {
      const config = configFromFlags(options.read ?? [], options.write ?? []);
      const union = new UnionFs(config);
      const handler = new FuseHandler(union);
      const model = new FsDevice(handler, { tag: options.tag ?? 'novm', requestQueues: options.queues ?? 1 });
      return { model, close: async () => {} };
    }
    default:
      if ((BACKEND_DEVICE_KINDS as readonly string[]).includes(kind)) throw new InputError(`vhost-user ${kind}: not implemented yet`);
      throw new InputError(`unknown device kind '${kind}' (expected one of: ${BACKEND_DEVICE_KINDS.join(', ')})`);
  }
}
