// A fake packed-ring driver for tests (virtio 1.2 §2.8): posts chains with the head's flags
// written last, reads used elements back.
import { GuestMemory } from '../../src/memory/guest-memory.js';

const NEXT = 1;
const WRITE = 2;
const INDIRECT = 4;
const AVAIL = 1 << 7;
const USED = 1 << 15;

/** A packed-ring driver: descriptors at 0x1000, event areas at 0x0 / 0x10, data from 0x10000. */
export class FakePackedDriver {
  readonly memory = GuestMemory.anonymous([{ start: 0, size: 1 << 20 }]);
  readonly config;
  private next = 0;
  private wrap = true;
  private usedNext = 0;
  private usedWrap = true;
  private data = 0x10000;
  private nextId = 0;

  constructor(readonly size: number) {
    this.config = { size, descAddr: 0x1000, driverAddr: 0x0, deviceAddr: 0x10 };
  }

  allocate(length: number): number {
    if (this.data + length > 0xf0000) this.data = 0x10000;
    const a = this.data;
    this.data += Math.max(16, Math.ceil(length / 16) * 16);
    return a;
  }

  /** Posts a chain; the head's flags are written last, as a driver must (§2.8.21). */
  post(buffers: ReadonlyArray<{ length: number; writable: boolean }>, indirect = false): { id: number; addresses: number[] } {
    const id = this.nextId++ & 0x7fff;
    const addresses = buffers.map((b) => this.allocate(b.length));
    const availFlags = this.wrap ? AVAIL : USED;
    const writes: Array<() => void> = [];
    const put = (slot: number, addr: number, len: number, flags: number) => {
      const d = this.config.descAddr + 16 * slot;
      this.memory.writeU64LE(d, BigInt(addr));
      this.memory.writeU32LE(d + 8, len);
      this.memory.writeU16LE(d + 12, id);
      return () => this.memory.writeU16LE(d + 14, flags);
    };
    if (indirect) {
      const table = this.allocate(16 * buffers.length);
      buffers.forEach((b, i) => {
        this.memory.writeU64LE(table + 16 * i, BigInt(addresses[i]!));
        this.memory.writeU32LE(table + 16 * i + 8, b.length);
        this.memory.writeU16LE(table + 16 * i + 14, b.writable ? WRITE : 0);
      });
      writes.push(put(this.next, table, 16 * buffers.length, INDIRECT | availFlags));
      this.advance();
    } else {
      buffers.forEach((b, i) => {
        const flags = (b.writable ? WRITE : 0) | (i + 1 < buffers.length ? NEXT : 0) | (this.wrap ? AVAIL : USED);
        writes.push(put(this.next, addresses[i]!, b.length, flags));
        this.advance();
      });
    }
    for (let i = writes.length - 1; i >= 0; i--) writes[i]!();
    return { id, addresses };
  }

  private advance(): void {
    if (++this.next === this.size) {
      this.next = 0;
      this.wrap = !this.wrap;
    }
  }

  /** Used elements the device wrote since the last call: [id, len]. */
  takeUsed(): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    for (;;) {
      const d = this.config.descAddr + 16 * this.usedNext;
      const flags = this.memory.readU16LE(d + 14);
      const avail = (flags & AVAIL) !== 0;
      const used = (flags & USED) !== 0;
      if (avail !== this.usedWrap || used !== this.usedWrap) return out;
      out.push([this.memory.readU16LE(d + 12), this.memory.readU32LE(d + 8)]);
      // Skip the slots the chain took: the driver knows them (here: by remembering lengths).
      const slots = this.chainSlots.shift() ?? 1;
      this.usedNext += slots;
      if (this.usedNext >= this.size) {
        this.usedNext -= this.size;
        this.usedWrap = !this.usedWrap;
      }
    }
  }

  readonly chainSlots: number[] = [];
}

