// Test doubles for the transports: a device model that records what the transport did to it,
// an interrupt sink that records what reached the "machine", and little-endian bus helpers.
import type { BusDevice } from '../../src/bus/bus-device.js';
import type { ActivationContext, VirtioDeviceModel } from '../../src/virtio/device.js';
import type { InterruptSink } from '../../src/virtio/transport/virtio-pci.js';

export const VERSION_1 = 1n << 32n;

export class RecordingDevice implements VirtioDeviceModel {
  readonly deviceType = 4;
  readonly queueMaxSizes = [256, 64];
  readonly deviceFeatures = VERSION_1 | (1n << 0n) | (1n << 40n);
  readonly configSize = 8;
  readonly configBytes = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
  context: ActivationContext | undefined;
  activations = 0;
  resets = 0;
  readonly notified: number[] = [];
  throwOnNotify = false;

  readConfig(offset: number, data: Uint8Array): void {
    if (offset < 0 || offset + data.length > this.configSize) throw new Error(`config read out of range at ${offset}`);
    data.set(this.configBytes.subarray(offset, offset + data.length));
  }

  writeConfig(offset: number, data: Uint8Array): void {
    if (offset < 0 || offset + data.length > this.configSize) throw new Error(`config write out of range at ${offset}`);
    this.configBytes.set(data, offset);
  }

  activate(context: ActivationContext): void {
    this.context = context;
    this.activations++;
  }

  notify(queueIndex: number): void {
    if (this.throwOnNotify) throw new Error('device exploded');
    this.notified.push(queueIndex);
  }

  reset(): void {
    this.resets++;
    this.context = undefined;
  }
}

export class RecordingSink implements InterruptSink {
  readonly messages: Array<{ address: bigint; data: number }> = [];
  readonly levels: boolean[] = [];
  msi(address: bigint, data: number): void {
    this.messages.push({ address, data });
  }
  intx(level: boolean): void {
    this.levels.push(level);
  }
  get level(): boolean {
    return this.levels.at(-1) ?? false;
  }
}

export function read(device: BusDevice, offset: number, size: number): number {
  const data = new Uint8Array(size);
  device.read(offset, data);
  let value = 0;
  for (let i = size - 1; i >= 0; i--) value = value * 256 + data[i]!;
  return value;
}

export function write(device: BusDevice, offset: number, size: number, value: number): void {
  const data = new Uint8Array(size);
  let v = value;
  for (let i = 0; i < size; i++) {
    data[i] = v % 256;
    v = Math.floor(v / 256);
  }
  device.write(offset, data);
}
