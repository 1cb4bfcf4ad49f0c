// virtio-rng (virtio 1.2 §5.4): one request queue; the driver posts device-writable buffers
// and the device fills them with entropy from the host kernel (getrandom via randomFillSync).
import { randomFillSync } from 'node:crypto';
import { QueueDevice, queueFeatures, type DeviceOptions } from '../queue-device.js';

export const VIRTIO_ID_RNG = 4;
/** Bytes served per request at most: bounds host work per guest kick. */
const MAX_BYTES_PER_REQUEST = 64 * 1024;

export class RngDevice extends QueueDevice {
  readonly deviceType = VIRTIO_ID_RNG;
  readonly queueMaxSizes = [256];
  readonly deviceFeatures: bigint;
  readonly configSize = 0;
  /** Total bytes handed to the guest (a metric). */
  bytesServed = 0;

  constructor(options: DeviceOptions = {}) {
    super(options);
    this.deviceFeatures = queueFeatures(options);
  }

  protected get name(): string {
    return 'virtio-rng';
  }

  readConfig(_offset: number, data: Uint8Array): void {
    data.fill(0);
  }

  writeConfig(): void {}

  protected processQueue(): void {
    this.drain(0, (chain, memory) => {
      const n = Math.min(chain.writableBytes, MAX_BYTES_PER_REQUEST);
      const written = chain.forEachSlice(memory, true, 0, n, fillRandom);
      this.bytesServed += written;
      return written;
    });
  }
}

function fillRandom(bytes: Uint8Array): void {
  randomFillSync(bytes);
}
