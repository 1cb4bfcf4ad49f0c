// The host bridge at 00:00.0: an identity in config space and nothing else. Linux only needs
// to find a class 0x0600 function at slot 0; novm uses Intel's 440FX ID that every guest knows.
import { PciConfigSpace } from './config-space.js';
import type { PciDevice } from './pci-device.js';

export const HOST_BRIDGE_VENDOR_ID = 0x8086;
export const HOST_BRIDGE_DEVICE_ID = 0x1237;
export const PCI_CLASS_HOST_BRIDGE = 0x06_00_00;

export class PciHostBridge implements PciDevice {
  readonly config = new PciConfigSpace({
    vendorId: HOST_BRIDGE_VENDOR_ID,
    deviceId: HOST_BRIDGE_DEVICE_ID,
    classCode: PCI_CLASS_HOST_BRIDGE,
    revision: 0,
    subsystemVendorId: 0,
    subsystemId: 0,
    interruptPin: 0,
  });

  barRead(_bar: number, _offset: number, data: Uint8Array): void {
    data.fill(0xff);
  }

  barWrite(): void {}
}
