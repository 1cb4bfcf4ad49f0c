// Finding and decoding multiboot headers.
// Multiboot 0.6.96, 3.1: magic 0x1BADB002 within the first 8192 bytes, 32-bit aligned, with
// magic + flags + checksum == 0 (mod 2^32).
// Multiboot2 (1.6), 3.1: magic 0xE85250D6 within the first 32768 bytes, 64-bit aligned, with
// magic + architecture + header_length + checksum == 0, followed by 8-aligned tags ending in type 0.
import { ByteReader } from './bytes.js';

export const MB1_HEADER_MAGIC = 0x1badb002;
export const MB2_HEADER_MAGIC = 0xe85250d6;
const MB1_SEARCH = 8192;
const MB2_SEARCH = 32768;

export interface AddressFields {
  readonly headerAddr: number;
  readonly loadAddr: number;
  readonly loadEndAddr: number;
  readonly bssEndAddr: number;
  readonly entryAddr?: number;
}

export interface Multiboot1Header {
  readonly version: 1;
  readonly offset: number;
  readonly flags: number;
  readonly address?: AddressFields;
}

export interface Multiboot2Tag {
  readonly type: number;
  readonly optional: boolean;
  readonly body: Uint8Array; // bytes after the 8-byte tag header
}

export interface Multiboot2Header {
  readonly version: 2;
  readonly offset: number;
  readonly architecture: number;
  readonly tags: readonly Multiboot2Tag[];
}

export type MultibootHeader = Multiboot1Header | Multiboot2Header;

export class MultibootHeaderError extends Error {
  readonly kind = 'multiboot-header' as const;
}

/** The multiboot header the image carries; when it has both, `prefer` picks. */
export function findMultibootHeader(bytes: Uint8Array, prefer: 1 | 2 = 2): MultibootHeader | undefined {
  const v1 = findV1(bytes);
  const v2 = findV2(bytes);
  if (v1 && v2) return prefer === 1 ? v1 : v2;
  return v2 ?? v1;
}

function findV1(bytes: Uint8Array): Multiboot1Header | undefined {
  const r = new ByteReader(bytes);
  const end = Math.min(MB1_SEARCH, bytes.length) - 12;
  for (let at = 0; at <= end; at += 4) {
    if (r.u32(at) !== MB1_HEADER_MAGIC) continue;
    const flags = r.u32(at + 4);
    if (((MB1_HEADER_MAGIC + flags + r.u32(at + 8)) >>> 0) !== 0) continue;
    let address: AddressFields | undefined;
    if (flags & 0x10000) {
      if (!r.has(at, 32)) throw new MultibootHeaderError('multiboot header address fields are truncated');
      address = { headerAddr: r.u32(at + 12), loadAddr: r.u32(at + 16), loadEndAddr: r.u32(at + 20), bssEndAddr: r.u32(at + 24), entryAddr: r.u32(at + 28) };
    }
    return { version: 1, offset: at, flags, ...(address ? { address } : {}) };
  }
  return undefined;
}

function findV2(bytes: Uint8Array): Multiboot2Header | undefined {
  const r = new ByteReader(bytes);
  const end = Math.min(MB2_SEARCH, bytes.length) - 16;
  for (let at = 0; at <= end; at += 8) {
    if (r.u32(at) !== MB2_HEADER_MAGIC) continue;
    const architecture = r.u32(at + 4);
    const length = r.u32(at + 8);
    if (((MB2_HEADER_MAGIC + architecture + length + r.u32(at + 12)) >>> 0) !== 0) continue;
    if (length < 24 || !r.has(at, length)) throw new MultibootHeaderError(`multiboot2 header length ${length} is invalid or runs past the file`);
    const tags: Multiboot2Tag[] = [];
    let p = at + 16;
    for (;;) {
      if (p + 8 > at + length) throw new MultibootHeaderError('multiboot2 header has no end tag');
      const type = r.u16(p);
      const tagFlags = r.u16(p + 2);
      const size = r.u32(p + 4);
      if (size < 8 || p + size > at + length) throw new MultibootHeaderError(`multiboot2 header tag ${type} has invalid size ${size}`);
      if (type === 0) break;
      tags.push({ type, optional: (tagFlags & 1) !== 0, body: r.slice(p + 8, size - 8) });
      p += Math.ceil(size / 8) * 8;
    }
    return { version: 2, offset: at, architecture, tags };
  }
  return undefined;
}
