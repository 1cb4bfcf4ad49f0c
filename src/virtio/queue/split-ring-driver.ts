// The driver's side of a split virtqueue (virtio 1.2 §2.7), written in guest memory: it lays
// out the rings, posts chains of buffers (direct or through an indirect table) and reads the used
// ring back. The device side (split-queue.ts) never uses it; it drives a device with no guest:
// the fs device's JIT warm-up, tests and benchmarks (which can also make it lie with raw
// descriptor writes).
import type { GuestMemory } from '../../memory/guest-memory.js';
import type { QueueConfig } from '../device.js';

export interface ChainBuffer {
  readonly length: number;
  readonly writable: boolean;
  /** Bytes to put in a device-readable buffer (default: zeros). */
  readonly data?: Uint8Array | undefined;
}

export interface UsedElement {
  readonly id: number;
  readonly length: number;
}

const DESC_F_NEXT = 1;
const DESC_F_WRITE = 2;
const DESC_F_INDIRECT = 4;

export class SplitRingDriver {
  /** Guest memory one ring of `size` entries takes (descriptors and available ring, used ring). */
  static bytesFor(size: number): number {
    return align(16 * size + 6 + 2 * size, 4096) + align(6 + 8 * size, 4096);
  }

  readonly config: QueueConfig;
  private nextDescriptor = 0;
  private availIdx = 0;
  private usedSeen = 0;
  private dataCursor: number;

  constructor(readonly memory: GuestMemory, readonly size: number, base: number, private readonly dataStart: number, private readonly dataEnd: number) {
    const descAddr = base;
    const driverAddr = descAddr + 16 * size;
    const deviceAddr = align(driverAddr + 6 + 2 * size, 4096);
    this.config = { size, descAddr, driverAddr, deviceAddr };
    this.dataCursor = dataStart;
  }

  /** Allocates guest memory for a buffer (a bump allocator that wraps around). */
  allocate(length: number): number {
    if (this.dataCursor + length > this.dataEnd) this.dataCursor = this.dataStart;
    const address = this.dataCursor;
    this.dataCursor = align(this.dataCursor + Math.max(length, 1), 16);
    return address;
  }

  writeDescriptor(index: number, addr: number, length: number, flags: number, next: number, table = this.config.descAddr): void {
    const d = table + 16 * index;
    this.memory.writeU64LE(d, BigInt(addr));
    this.memory.writeU32LE(d + 8, length >>> 0);
    this.memory.writeU16LE(d + 12, flags);
    this.memory.writeU16LE(d + 14, next);
  }

  /** Publishes `head` in the available ring. */
  publish(head: number): void {
    this.memory.writeU16LE(this.config.driverAddr + 4 + 2 * (this.availIdx % this.size), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.memory.writeU16LE(this.config.driverAddr + 2, this.availIdx);
  }

  /** Posts a chain of buffers; returns {head, addresses}. */
  post(buffers: readonly ChainBuffer[], options: { indirect?: boolean } = {}): { head: number; addresses: number[] } {
    const addresses = buffers.map((b) => {
      const address = this.allocate(b.length);
      if (b.data !== undefined) this.memory.write(address, b.data);
      else if (!b.writable) this.memory.fill(address, b.length, 0);
      return address;
    });
    if (options.indirect === true) {
      const table = this.allocate(16 * buffers.length);
      buffers.forEach((b, i) => this.writeDescriptor(i, addresses[i]!, b.length, (b.writable ? DESC_F_WRITE : 0) | (i + 1 < buffers.length ? DESC_F_NEXT : 0), i + 1, table));
      const head = this.take(1)[0]!;
      this.writeDescriptor(head, table, 16 * buffers.length, DESC_F_INDIRECT, 0);
      this.publish(head);
      return { head, addresses };
    }
    const indices = this.take(buffers.length);
    buffers.forEach((b, i) => this.writeDescriptor(indices[i]!, addresses[i]!, b.length, (b.writable ? DESC_F_WRITE : 0) | (i + 1 < buffers.length ? DESC_F_NEXT : 0), indices[i + 1] ?? 0));
    this.publish(indices[0]!);
    return { head: indices[0]!, addresses };
  }

  private take(count: number): number[] {
    const out: number[] = [];
    for (let i = 0; i < count; i++) {
      out.push(this.nextDescriptor);
      this.nextDescriptor = (this.nextDescriptor + 1) % this.size;
    }
    return out;
  }

  /** Used elements added since the last call. */
  takeUsed(): UsedElement[] {
    const usedIdx = this.memory.readU16LE(this.config.deviceAddr + 2);
    const out: UsedElement[] = [];
    while (this.usedSeen !== usedIdx) {
      const slot = this.config.deviceAddr + 4 + 8 * (this.usedSeen % this.size);
      out.push({ id: this.memory.readU32LE(slot), length: this.memory.readU32LE(slot + 4) });
      this.usedSeen = (this.usedSeen + 1) & 0xffff;
    }
    return out;
  }

  /** Sets used_event (VIRTIO_F_EVENT_IDX): the driver wants an interrupt after that entry. */
  setUsedEvent(value: number): void {
    this.memory.writeU16LE(this.config.driverAddr + 4 + 2 * this.size, value);
  }

  get availIndex(): number {
    return this.availIdx;
  }
}

export function align(value: number, to: number): number {
  return Math.ceil(value / to) * to;
}
