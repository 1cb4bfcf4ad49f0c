// A tap double: frames the "kernel" queues for the device, frames the device wrote.
import type { TapPort } from '../../src/virtio/devices/net/tap-port.js';

export class FakeTap implements TapPort {
  readonly inbound: Uint8Array[] = [];
  readonly outbound: Uint8Array[] = [];
  readonly offloadHistory: number[] = [];
  private handler: (() => void) | undefined;
  constructor(readonly supportedOffloads: number) {}
  read(buffer: Uint8Array): number {
    const frame = this.inbound.shift();
    if (frame === undefined) return 0;
    buffer.set(frame.subarray(0, buffer.length));
    return Math.min(frame.length, buffer.length);
  }
  write(frame: Uint8Array): boolean {
    this.outbound.push(frame.slice());
    return true;
  }
  armReadable(handler: () => void): void {
    this.handler = handler;
  }
  setOffloads(flags: number): void {
    this.offloadHistory.push(flags);
  }
  close(): void {}
  /** The kernel queues a frame; the poll wakes the device if it armed. */
  inject(frame: Uint8Array): void {
    this.inbound.push(frame);
    const h = this.handler;
    this.handler = undefined;
    h?.();
  }
  get armed(): boolean {
    return this.handler !== undefined;
  }
}
