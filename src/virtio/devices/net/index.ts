// virtio-net: the device model, the tap port it needs, and the real tap adapter.
import { NetDevice, type NetDeviceOptions } from './net-device.js';
import { TapDevice, type FdReadiness } from './tap-device.js';

export * from './net-device.js';
export * from './tap-device.js';
export * from './tap-port.js';

export interface TapNetOptions extends NetDeviceOptions {
  /** Tap interface to create or attach to ("" or undefined: the kernel picks tapN). */
  readonly tap?: string;
  readonly readiness?: FdReadiness;
}

/** A virtio-net device on a host tap; close() releases the tap. */
export function openTapNetDevice(options: TapNetOptions = {}): { device: NetDevice; tap: TapDevice; close(): void } {
  const tap = TapDevice.open({
    ...(options.tap === undefined ? {} : { name: options.tap }),
    ...(options.readiness === undefined ? {} : { readiness: options.readiness }),
  });
  try {
    const device = new NetDevice(tap, options);
    return { device, tap, close: () => tap.close() };
  } catch (error: unknown) {
    tap.close();
    throw error;
  }
}
