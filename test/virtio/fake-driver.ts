// A fake virtio driver for tests: lays out split rings in fake guest memory, posts chains
// (direct or through an indirect table) and reads the used ring back. It can also be made to
// lie (raw descriptor writes) for hostile-driver tests.
import { GuestMemory } from '../../src/memory/guest-memory.js';
import type { ActivationContext, QueueConfig } from '../../src/virtio/device.js';

export interface Buffer {
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

export class FakeQueue {
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
  post(buffers: readonly Buffer[], options: { indirect?: boolean } = {}): { head: number; addresses: number[] } {
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

export interface FakeDriver {
  readonly memory: GuestMemory;
  readonly queues: FakeQueue[];
  readonly notified: number[];
  readonly resets: string[];
  readonly context: ActivationContext;
}

/** 4 MiB of fake RAM at 0 with `count` queues of `size` and a shared data area. */
export function fakeDriver(count: number, size: number, features: bigint, memoryBytes = 4 << 20): FakeDriver {
  const memory = GuestMemory.anonymous([{ start: 0, size: memoryBytes }]);
  const queues: FakeQueue[] = [];
  const ringBytes = align(16 * size + 6 + 2 * size, 4096) + align(6 + 8 * size, 4096);
  const dataStart = align(count * ringBytes, 4096);
  const perQueue = Math.floor((memoryBytes - dataStart) / count);
  for (let i = 0; i < count; i++) {
    queues.push(new FakeQueue(memory, size, i * ringBytes, dataStart + i * perQueue, dataStart + (i + 1) * perQueue));
  }
  const notified: number[] = [];
  const resets: string[] = [];
  const context: ActivationContext = {
    memory,
    features,
    queues: queues.map((q) => q.config),
    notifyQueue: (i) => notified.push(i),
    notifyConfig: () => notified.push(-1),
    needsReset: (reason) => resets.push(reason),
  };
  return { memory, queues, notified, resets, context };
}

function align(value: number, to: number): number {
  return Math.ceil(value / to) * to;
}

/** A virtio-console control message (virtio 1.2 5.3.6.2: id u32, event u16, value u16). */
export function consoleControl(id: number, event: number, value: number): Uint8Array {
  const m = new Uint8Array(8);
  const v = new DataView(m.buffer);
  v.setUint32(0, id, true);
  v.setUint16(4, event, true);
  v.setUint16(6, value, true);
  return m;
}

/** Points the descriptors of a random 16-byte-descriptor ring whose first byte is odd at plausible
 *  places (address below 0x20000, length below 0x2000), so hostile-ring tests reach past the
 *  first bounds check; the layout of addr and len is the same in split and packed rings. */
export function maskSomeDescriptors(ring: Uint8Array, count: number): void {
  const view = new DataView(ring.buffer, ring.byteOffset, ring.byteLength);
  for (let i = 0; i < count; i++) {
    if (ring[16 * i]! & 1) {
      view.setUint32(16 * i + 4, 0, true);
      view.setUint32(16 * i, view.getUint32(16 * i, true) & 0x1ffff, true);
      view.setUint32(16 * i + 8, view.getUint32(16 * i + 8, true) & 0x1fff, true);
    }
  }
}
