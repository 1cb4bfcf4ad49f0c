// System description table framing: the 36-byte header (ACPI 6.5 section 5.2.6), checksums,
// and Generic Address Structures (5.2.3.2).

export const SDT_HEADER_SIZE = 36;

export interface OemInfo {
  readonly oemId: string;
  readonly oemTableId: string;
}

export const NOVM_OEM: OemInfo = { oemId: 'NOVM  ', oemTableId: 'NOVMACPI' };
/** Creator ID and revision: ours, not a compiler's. */
const CREATOR_ID = 'NOVM';
const CREATOR_REVISION = 1;

function ascii(out: Uint8Array, at: number, text: string, width: number): void {
  for (let i = 0; i < width; i++) out[at + i] = i < text.length ? text.charCodeAt(i) : 0x20;
}

/** Byte sum modulo 256; a valid table sums to 0. */
export function byteSum(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let sum = 0;
  for (let i = start; i < end; i++) sum = (sum + bytes[i]!) & 0xff;
  return sum;
}

/** Sets `bytes[at]` so that bytes[start, end) sums to zero. */
export function fixChecksum(bytes: Uint8Array, at: number, start = 0, end = bytes.length): void {
  bytes[at] = 0;
  bytes[at] = (0x100 - byteSum(bytes, start, end)) & 0xff;
}

/**
 * A table being built: the header is filled in by `finish`, the body written through `view`
 * at offsets counted from the start of the table (so spec offsets can be used directly).
 */
export class TableWriter {
  readonly bytes: Uint8Array;
  readonly view: DataView;

  constructor(readonly signature: string, length: number, readonly revision: number) {
    this.bytes = new Uint8Array(length);
    this.view = new DataView(this.bytes.buffer);
  }

  u8(at: number, value: number): this {
    this.view.setUint8(at, value);
    return this;
  }
  u16(at: number, value: number): this {
    this.view.setUint16(at, value, true);
    return this;
  }
  u32(at: number, value: number): this {
    this.view.setUint32(at, value, true);
    return this;
  }
  u64(at: number, value: number | bigint): this {
    this.view.setBigUint64(at, BigInt(value), true);
    return this;
  }
  raw(at: number, data: Uint8Array): this {
    this.bytes.set(data, at);
    return this;
  }

  /** Generic Address Structure (5.2.3.2): 12 bytes. */
  gas(at: number, gas: GenericAddress): this {
    this.u8(at, gas.space === 'io' ? 1 : 0);
    this.u8(at + 1, gas.bitWidth);
    this.u8(at + 2, gas.bitOffset ?? 0);
    this.u8(at + 3, gas.accessSize);
    this.u64(at + 4, gas.address);
    return this;
  }

  finish(oem: OemInfo): Uint8Array {
    ascii(this.bytes, 0, this.signature, 4);
    this.u32(4, this.bytes.length);
    this.u8(8, this.revision);
    ascii(this.bytes, 10, oem.oemId, 6);
    ascii(this.bytes, 16, oem.oemTableId, 8);
    this.u32(24, 1); // OEM revision
    ascii(this.bytes, 28, CREATOR_ID, 4);
    this.u32(32, CREATOR_REVISION);
    fixChecksum(this.bytes, 9);
    return this.bytes;
  }
}

export interface GenericAddress {
  readonly space: 'memory' | 'io';
  readonly bitWidth: number;
  readonly bitOffset?: number;
  /** 0 undefined, 1 byte, 2 word, 3 dword, 4 qword. */
  readonly accessSize: 0 | 1 | 2 | 3 | 4;
  readonly address: number | bigint;
}
