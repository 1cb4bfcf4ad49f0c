// The driver side of a split virtqueue over fake guest memory (virtio 1.2 section 2.7), for
// device tests: post chains, read used entries back. Deliberately simple and trusting: tests
// that want hostile rings write memory directly.
import type { GuestMemory } from '../../src/memory/guest-memory.js';
import type { QueueConfig } from '../../src/virtio/device.js';

export interface Segment {
  readonly addr: number;
  readonly len: number;
  readonly writable: boolean;
}

export class FakeVirtqueue {
  readonly descAddr: number;
  readonly availAddr: number;
  readonly usedAddr: number;
  private nextDesc = 0;
  private availIdx = 0;
  private lastUsed = 0;
  private dataCursor: number;

  /** Rings at `base`, buffers allocated from `dataBase` upwards. */
  constructor(readonly memory: GuestMemory, readonly size: number, base: number, dataBase: number) {
    this.descAddr = base;
    this.availAddr = base + 16 * size;
    this.usedAddr = (this.availAddr + 6 + 2 * size + 3) & ~3;
    this.dataCursor = dataBase;
  }

  get config(): QueueConfig {
    return { size: this.size, descAddr: this.descAddr, driverAddr: this.availAddr, deviceAddr: this.usedAddr };
  }

  /** Allocates guest bytes for a buffer (never freed; tests are short). */
  alloc(length: number, fill?: Uint8Array): number {
    const addr = this.dataCursor;
    this.dataCursor += (length + 15) & ~15;
    if (fill !== undefined) this.memory.write(addr, fill);
    return addr;
  }

  /** Posts a chain made of the given segments; returns its head index. */
  post(segments: readonly Segment[]): number {
    const head = this.nextDesc % this.size;
    for (let i = 0; i < segments.length; i++) {
      const index = (this.nextDesc + i) % this.size;
      const next = (this.nextDesc + i + 1) % this.size;
      const d = this.descAddr + 16 * index;
      const s = segments[i]!;
      this.memory.writeU64LE(d, BigInt(s.addr));
      this.memory.writeU32LE(d + 8, s.len);
      const flags = (i + 1 < segments.length ? 1 : 0) | (s.writable ? 2 : 0);
      this.memory.writeU16LE(d + 12, flags);
      this.memory.writeU16LE(d + 14, i + 1 < segments.length ? next : 0);
    }
    this.nextDesc += segments.length;
    this.memory.writeU16LE(this.availAddr + 4 + 2 * (this.availIdx % this.size), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.memory.writeU16LE(this.availAddr + 2, this.availIdx);
    return head;
  }

  /** Posts a device-readable buffer holding `bytes`. */
  postReadable(bytes: Uint8Array): number {
    const addr = this.alloc(bytes.length, bytes);
    return this.post([{ addr, len: bytes.length, writable: false }]);
  }

  /** Posts a device-writable buffer of `length` bytes; returns its head and address. */
  postWritable(length: number): { head: number; addr: number } {
    const addr = this.alloc(length);
    return { head: this.post([{ addr, len: length, writable: true }]), addr };
  }

  /** Used entries the device added since the last call. */
  takeUsed(): Array<{ id: number; len: number }> {
    const out: Array<{ id: number; len: number }> = [];
    const usedIdx = this.memory.readU16LE(this.usedAddr + 2);
    while (this.lastUsed !== usedIdx) {
      const e = this.usedAddr + 4 + 8 * (this.lastUsed % this.size);
      out.push({ id: this.memory.readU32LE(e), len: this.memory.readU32LE(e + 4) });
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
    }
    return out;
  }
}
