// Which device model `novm vhost-user KIND` serves, built from command-line options.
import { InputError } from '../common/errors.js';
import { RngDevice } from '../virtio/devices/rng/rng-device.js';
import type { BackendDevice } from './backend.js';

export const BACKEND_DEVICE_KINDS = ['rng', 'blk', 'console', 'fs', 'net', 'vsock'] as const;

export interface BackendDeviceOptions {
  readonly image?: string | undefined;
  readonly readonly?: boolean;
  readonly serial?: string | undefined;
  readonly queues?: number;
  readonly tag?: string;
  readonly read?: readonly string[];
  readonly write?: string | undefined;
}

export interface OpenedDevice {
  readonly model: BackendDevice;
  close(): Promise<void>;
}

export async function createBackendDevice(kind: string, _options: BackendDeviceOptions): Promise<OpenedDevice> {
  switch (kind) {
    case 'rng':
      return { model: new RngDevice(), close: async () => {} };
    default:
      if ((BACKEND_DEVICE_KINDS as readonly string[]).includes(kind)) throw new InputError(`vhost-user ${kind}: not implemented yet`);
      throw new InputError(`unknown device kind '${kind}' (expected one of: ${BACKEND_DEVICE_KINDS.join(', ')})`);
  }
}
