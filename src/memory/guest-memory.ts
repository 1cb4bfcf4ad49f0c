// Guest physical memory: an ordered set of regions, each viewed through one or more typed
// arrays of at most 1 GiB (HOST-NOTES: a koffi view over 4 GiB aborts the process).
// Every access is bounds-checked; nothing here trusts an address or length from a guest.
import type { GuestAddress } from './address.js';
import { GiB } from './address.js';
import { outOfRange } from './errors.js';

/** One contiguous piece of guest RAM and where it lives on the host. */
export interface GuestRegion {
  readonly start: GuestAddress;
  readonly size: number;
  /** File descriptor backing the region (memfd), or -1 for anonymous test memory. */
  readonly fd: number;
  /** Offset of the region inside `fd`. */
  readonly fdOffset: number;
  /** Host virtual address of the region's mapping in this process (0n if none). */
  readonly hostAddress: bigint;
}

/** A view chunk: guest [start, start + bytes.length) is bytes. */
interface Chunk {
  readonly start: number;
  readonly end: number;
  readonly bytes: Uint8Array;
  readonly view: DataView;
}

export const MAX_VIEW_BYTES = GiB;

export interface RegionBacking {
  readonly region: GuestRegion;
  /** The whole region's bytes, as one or more buffers covering it in order. */
  readonly buffers: readonly ArrayBuffer[];
}

export class GuestMemory {
  readonly regions: readonly GuestRegion[];
  private readonly chunks: Chunk[] = [];
  private last: Chunk | undefined;
  /** Regions mapped in this process, as [guest start, guest end, host address] numbers (host
   *  addresses are below 2^47, exact as doubles; numbers keep hostAddressOf free of bigints). */
  private readonly mapped: Float64Array;

  constructor(backings: readonly RegionBacking[]) {
    this.regions = backings.map((b) => b.region);
    const mapped = this.regions.filter((r) => r.hostAddress !== 0n);
    this.mapped = new Float64Array(3 * mapped.length);
    mapped.forEach((r, i) => this.mapped.set([r.start, r.start + r.size, Number(r.hostAddress)], 3 * i));
    for (const backing of backings) {
      let cursor = backing.region.start as number;
      for (const buffer of backing.buffers) {
        for (let off = 0; off < buffer.byteLength; off += MAX_VIEW_BYTES) {
          const len = Math.min(MAX_VIEW_BYTES, buffer.byteLength - off);
          const bytes = new Uint8Array(buffer, off, len);
          this.chunks.push({ start: cursor, end: cursor + len, bytes, view: new DataView(buffer, off, len) });
          cursor += len;
        }
      }
      if (cursor !== backing.region.start + backing.region.size) {
        throw new RangeError(`region at 0x${backing.region.start.toString(16)}: buffers cover ${cursor - backing.region.start} of ${backing.region.size} bytes`);
      }
    }
    this.chunks.sort((a, b) => a.start - b.start);
    for (let i = 1; i < this.chunks.length; i++) {
      if (this.chunks[i]!.start < this.chunks[i - 1]!.end) throw new RangeError('guest memory regions overlap');
    }
  }

  /** Memory backed by plain ArrayBuffers: for tests and fake guests. */
  static anonymous(layout: ReadonlyArray<{ start: number; size: number }>): GuestMemory {
    return new GuestMemory(layout.map(({ start, size }) => ({
      region: { start: start as GuestAddress, size, fd: -1, fdOffset: 0, hostAddress: 0n },
      buffers: splitBuffers(size),
    })));
  }

  /** Total bytes of RAM. */
  get size(): number {
    return this.regions.reduce((sum, r) => sum + r.size, 0);
  }

  private find(address: number): Chunk | undefined {
    const last = this.last;
    if (last !== undefined && address >= last.start && address < last.end) return last;
    // Few chunks (one per GiB): a linear scan beats anything clever.
    for (const chunk of this.chunks) {
      if (address >= chunk.start && address < chunk.end) {
        this.last = chunk;
        return chunk;
      }
    }
    return undefined;
  }

  /** True if [address, address + length) is entirely guest RAM. */
  isValidRange(address: number, length: number): boolean {
    if (!Number.isSafeInteger(address) || !Number.isSafeInteger(length) || address < 0 || length < 0) return false;
    let cursor = address;
    const end = address + length;
    if (length === 0) return this.find(address) !== undefined;
    while (cursor < end) {
      const chunk = this.find(cursor);
      if (chunk === undefined) return false;
      cursor = chunk.end;
    }
    return true;
  }

  /** True if some region has a host mapping in this process (hostAddressOf can succeed). */
  get hasHostMapping(): boolean {
    return this.mapped.length > 0;
  }

  /**
   * The host virtual address of guest [address, address + length) when the whole range lies in
   * one region mapped in this process (a region is one contiguous mapping, whatever its views);
   * undefined if the range is not guest RAM, crosses a region end, or the region has no host
   * mapping (anonymous test memory). For handing guest buffers to system calls (iovecs).
   */
  hostAddressOf(address: number, length: number): number | undefined {
    if (!Number.isSafeInteger(address) || !Number.isSafeInteger(length) || address < 0 || length < 0) return undefined;
    const mapped = this.mapped;
    for (let i = 0; i < mapped.length; i += 3) {
      const start = mapped[i]!;
      if (address >= start && address < mapped[i + 1]! && address + length <= mapped[i + 1]!) return mapped[i + 2]! + (address - start);
    }
    return undefined;
  }

  /**
   * Zero-copy view of [address, address + length) when it lies inside one chunk, which is
   * the common case; undefined if it straddles chunks. Throws if it is not guest RAM.
   */
  slice(address: number, length: number): Uint8Array | undefined {
    const chunk = this.find(address);
    if (chunk === undefined || length < 0 || !Number.isSafeInteger(length)) throw outOfRange(address, length);
    const offset = address - chunk.start;
    if (address + length <= chunk.end) return chunk.bytes.subarray(offset, offset + length);
    if (!this.isValidRange(address, length)) throw outOfRange(address, length);
    return undefined;
  }

  /** Copies guest bytes into `target` (which may be any length). */
  readInto(address: number, target: Uint8Array): void {
    let done = 0;
    while (done < target.length) {
      const chunk = this.find(address + done);
      if (chunk === undefined) throw outOfRange(address, target.length);
      const offset = address + done - chunk.start;
      const n = Math.min(target.length - done, chunk.end - (address + done));
      target.set(chunk.bytes.subarray(offset, offset + n), done);
      done += n;
    }
  }

  read(address: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    this.readInto(address, out);
    return out;
  }

  write(address: number, source: Uint8Array): void {
    if (!this.isValidRange(address, source.length)) throw outOfRange(address, source.length);
    let done = 0;
    while (done < source.length) {
      const chunk = this.find(address + done)!;
      const offset = address + done - chunk.start;
      const n = Math.min(source.length - done, chunk.end - (address + done));
      chunk.bytes.set(source.subarray(done, done + n), offset);
      done += n;
    }
  }

  fill(address: number, length: number, value = 0): void {
    if (!this.isValidRange(address, length)) throw outOfRange(address, length);
    let done = 0;
    while (done < length) {
      const chunk = this.find(address + done)!;
      const offset = address + done - chunk.start;
      const n = Math.min(length - done, chunk.end - (address + done));
      chunk.bytes.fill(value, offset, offset + n);
      done += n;
    }
  }

  // Little-endian scalar accessors. A scalar that straddles two chunks takes the slow path.
  private scalar(address: number, size: number): { view: DataView; offset: number } | undefined {
    const chunk = this.find(address);
    if (chunk === undefined) throw outOfRange(address, size);
    if (address + size <= chunk.end) return { view: chunk.view, offset: address - chunk.start };
    return undefined;
  }

  readU8(address: number): number {
    const chunk = this.find(address);
    if (chunk === undefined) throw outOfRange(address, 1);
    return chunk.bytes[address - chunk.start]!;
  }

  readU16LE(address: number): number {
    const chunk = this.find(address);
    if (chunk !== undefined && address + 2 <= chunk.end) return chunk.view.getUint16(address - chunk.start, true);
    return new DataView(this.read(address, 2).buffer).getUint16(0, true);
  }

  readU32LE(address: number): number {
    const chunk = this.find(address);
    if (chunk !== undefined && address + 4 <= chunk.end) return chunk.view.getUint32(address - chunk.start, true);
    return new DataView(this.read(address, 4).buffer).getUint32(0, true);
  }

  readU64LE(address: number): bigint {
    const s = this.scalar(address, 8);
    if (s !== undefined) return s.view.getBigUint64(s.offset, true);
    return new DataView(this.read(address, 8).buffer).getBigUint64(0, true);
  }

  writeU8(address: number, value: number): void {
    const chunk = this.find(address);
    if (chunk === undefined) throw outOfRange(address, 1);
    chunk.bytes[address - chunk.start] = value;
  }

  writeU16LE(address: number, value: number): void {
    const chunk = this.find(address);
    if (chunk !== undefined && address + 2 <= chunk.end) {
      chunk.view.setUint16(address - chunk.start, value, true);
      return;
    }
    const tmp = new Uint8Array(2);
    new DataView(tmp.buffer).setUint16(0, value, true);
    this.write(address, tmp);
  }

  writeU32LE(address: number, value: number): void {
    const chunk = this.find(address);
    if (chunk !== undefined && address + 4 <= chunk.end) {
      chunk.view.setUint32(address - chunk.start, value, true);
      return;
    }
    const tmp = new Uint8Array(4);
    new DataView(tmp.buffer).setUint32(0, value >>> 0, true);
    this.write(address, tmp);
  }

  writeU64LE(address: number, value: bigint): void {
    const s = this.scalar(address, 8);
    if (s !== undefined) {
      s.view.setBigUint64(s.offset, value, true);
      return;
    }
    const tmp = new Uint8Array(8);
    new DataView(tmp.buffer).setBigUint64(0, value, true);
    this.write(address, tmp);
  }
}

function splitBuffers(size: number): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  for (let off = 0; off < size; off += MAX_VIEW_BYTES) out.push(new ArrayBuffer(Math.min(MAX_VIEW_BYTES, size - off)));
  return out;
}
