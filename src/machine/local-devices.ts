// Devices that live inside each vCPU worker: they are per-access cheap (no round trip to the
// main thread) and need no state shared between vCPUs.
import type { BusDevice } from '../bus/bus-device.js';

/**
 * novm's debug-exit port (like QEMU's isa-debug-exit, but the status is the byte itself): a
 * byte written ends the VM with that status. Test guests use it to report their result.
 */
export class DebugExitDevice implements BusDevice {
  constructor(private readonly onExit: (status: number) => void) {}
  read(_offset: number, data: Uint8Array): void {
    data.fill(0xff);
  }
  write(_offset: number, data: Uint8Array): void {
    this.onExit(data[0]!);
  }
}

/** Accepts and counts accesses; reads return a fixed pattern. For exit benchmarks and tests. */
export class CountingSinkDevice implements BusDevice {
  reads = 0;
  writes = 0;
  read(_offset: number, data: Uint8Array): void {
    this.reads++;
    data.fill(0x5a);
  }
  write(_offset: number, _data: Uint8Array): void {
    this.writes++;
  }
}

export type LocalDeviceSpec =
  | { readonly kind: 'debug-exit'; readonly space: 'pio'; readonly base: number }
  | { readonly kind: 'sink'; readonly space: 'pio' | 'mmio'; readonly base: number; readonly size: number };
