// Little-endian accessors over a Uint8Array that refuse to read past its end. Boot images come
// from files the user names, so every offset is checked; the caller turns a RangeError into an
// InputError that names the file.

export class ByteReader {
  private readonly view: DataView;
  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  get length(): number {
    return this.bytes.length;
  }
  has(offset: number, size: number): boolean {
    return Number.isSafeInteger(offset) && offset >= 0 && size >= 0 && offset + size <= this.bytes.length;
  }
  private need(offset: number, size: number): void {
    if (!this.has(offset, size)) throw new TruncatedError(offset, size, this.bytes.length);
  }
  u8(offset: number): number {
    this.need(offset, 1);
    return this.view.getUint8(offset);
  }
  u16(offset: number): number {
    this.need(offset, 2);
    return this.view.getUint16(offset, true);
  }
  u16be(offset: number): number {
    this.need(offset, 2);
    return this.view.getUint16(offset, false);
  }
  u32(offset: number): number {
    this.need(offset, 4);
    return this.view.getUint32(offset, true);
  }
  /** A 64-bit field as a number; throws when it exceeds 2^53 (no guest address here does). */
  u64(offset: number): number {
    this.need(offset, 8);
    const value = this.view.getBigUint64(offset, true);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new TruncatedError(offset, 8, this.bytes.length, 'value too large');
    return Number(value);
  }
  /** A 64-bit field that may exceed 2^53 (virtual addresses such as 0xffffffff81000000). */
  u64Big(offset: number): bigint {
    this.need(offset, 8);
    return this.view.getBigUint64(offset, true);
  }
  slice(offset: number, size: number): Uint8Array {
    this.need(offset, size);
    return this.bytes.subarray(offset, offset + size);
  }
}

/** Raised by ByteReader; loaders catch it and rethrow an InputError naming the file. */
export class TruncatedError extends RangeError {
  readonly kind = 'truncated' as const;
  constructor(offset: number, size: number, length: number, why = 'past the end') {
    super(`${why}: ${size} byte(s) at offset ${offset} of a ${length}-byte image`);
  }
}

/** A zero-filled buffer with little-endian writers, used to build boot structures. */
export class ByteWriter {
  readonly bytes: Uint8Array;
  private readonly view: DataView;
  constructor(size: number) {
    this.bytes = new Uint8Array(size);
    this.view = new DataView(this.bytes.buffer);
  }
  u8(offset: number, value: number): this {
    this.view.setUint8(offset, value);
    return this;
  }
  u16(offset: number, value: number): this {
    this.view.setUint16(offset, value, true);
    return this;
  }
  u32(offset: number, value: number): this {
    this.view.setUint32(offset, value >>> 0, true);
    return this;
  }
  u64(offset: number, value: number | bigint): this {
    this.view.setBigUint64(offset, BigInt(value), true);
    return this;
  }
  set(offset: number, bytes: Uint8Array): this {
    this.bytes.set(bytes, offset);
    return this;
  }
}

export function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}

export function alignDown(value: number, alignment: number): number {
  return Math.floor(value / alignment) * alignment;
}

/** A NUL-terminated ASCII/UTF-8 string. */
export function cString(text: string): Uint8Array {
  const encoded = new TextEncoder().encode(text);
  const out = new Uint8Array(encoded.length + 1);
  out.set(encoded);
  return out;
}
