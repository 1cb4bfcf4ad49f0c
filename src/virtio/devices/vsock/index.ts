// virtio-vsock: the device model and Firecracker-style hybrid Unix-socket host side.
import type { DeviceOptions } from '../queue-device.js';
import { HybridUnixVsock } from './hybrid-unix.js';
import { VsockDevice } from './vsock-device.js';

export * from './hybrid-unix.js';
export * from './packet.js';
export * from './vsock-device.js';

export interface HybridVsockOptions extends DeviceOptions {
  readonly guestCid: number;
  /** Unix socket standing for the guest; guest port N connects to "<udsPath>_N". */
  readonly udsPath: string;
  readonly maxConnections?: number;
}

/** A virtio-vsock device listening on udsPath for host-initiated connections. */
export async function openHybridVsockDevice(options: HybridVsockOptions): Promise<{ device: VsockDevice; close(): Promise<void> }> {
  const host = new HybridUnixVsock(options.udsPath);
  const device = new VsockDevice({ ...options, host });
  await host.listen(device);
  return {
    device,
    close: async () => {
      device.reset();
      await host.close();
    },
  };
}
