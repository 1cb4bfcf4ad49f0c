// The .xz container (XZ file format 1.1: 2.1 stream header, 3 blocks, 4 index), decoded block by
// block: the LZMA2 data goes to @napi-rs/lzma's raw LZMA2 decoder and the x86 BCJ filter is undone
// here (bcj-x86.ts), because the library refuses filter chains and kernels use `--x86`.
import { createRequire } from 'node:module';
import { crc32 } from 'node:zlib';
import { ByteReader } from '../bytes.js';
import { bcjX86Decode } from './bcj-x86.js';
import { DecompressError } from './errors.js';

interface Lzma2Binding {
  decompressSync(input: Uint8Array): Buffer;
}
const require = createRequire(import.meta.url);
const { lzma2 } = require('@napi-rs/lzma') as { lzma2: Lzma2Binding };

const STREAM_MAGIC = [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];
const FILTER_X86 = 0x04;
const FILTER_LZMA2 = 0x21;
const CHECK_CRC32 = 0x01;

/** Size of the check field for each check id (spec 2.1.1.2). */
function checkSize(id: number): number {
  if (id === 0) return 0;
  return 4 << Math.floor((id - 1) / 3);
}

function readVli(r: ByteReader, at: number): { value: number; next: number } {
  let value = 0;
  for (let i = 0; i < 9; i++) {
    const b = r.u8(at + i);
    value += (b & 0x7f) * 2 ** (7 * i);
    if ((b & 0x80) === 0) return { value, next: at + i + 1 };
  }
  throw new DecompressError('xz: variable-length integer too long');
}

/** Finds the end of a raw LZMA2 chunk sequence starting at `at` (spec 5.3.1; chunk headers). */
function lzma2End(r: ByteReader, at: number, limit: number): number {
  let p = at;
  while (p < limit) {
    const control = r.u8(p);
    if (control === 0x00) return p + 1;
    if (control === 0x01 || control === 0x02) {
      p += 3 + r.u16be(p + 1) + 1;
    } else if (control >= 0x80) {
      const packed = r.u16be(p + 3) + 1;
      p += (control >= 0xc0 ? 6 : 5) + packed;
    } else {
      throw new DecompressError(`xz: invalid LZMA2 chunk control byte 0x${control.toString(16)}`);
    }
  }
  throw new DecompressError('xz: LZMA2 data runs past the end of the input');
}

export function decompressXz(input: Uint8Array, expectedSize: number | undefined): Uint8Array {
  const r = new ByteReader(input);
  for (let i = 0; i < STREAM_MAGIC.length; i++) if (r.u8(i) !== STREAM_MAGIC[i]) throw new DecompressError('xz: bad stream magic');
  const checkId = r.u8(7) & 0x0f;
  const checkBytes = checkSize(checkId);
  const parts: Uint8Array[] = [];
  let total = 0;
  let at = 12;
  for (;;) {
    const sizeByte = r.u8(at);
    if (sizeByte === 0x00) break; // the index begins: no more blocks
    const headerSize = (sizeByte + 1) * 4;
    const headerEnd = at + headerSize;
    const stored = r.u32(headerEnd - 4);
    if ((crc32(r.slice(at, headerSize - 4)) >>> 0) !== stored) throw new DecompressError('xz: block header CRC mismatch');
    const flags = r.u8(at + 1);
    const filterCount = (flags & 0x03) + 1;
    let p = at + 2;
    let compressedSize: number | undefined;
    if (flags & 0x40) ({ value: compressedSize, next: p } = readVli(r, p));
    if (flags & 0x80) p = readVli(r, p).next;
    const filters: Array<{ id: number; props: Uint8Array }> = [];
    for (let f = 0; f < filterCount; f++) {
      const id = readVli(r, p);
      const propsSize = readVli(r, id.next);
      filters.push({ id: id.value, props: r.slice(propsSize.next, propsSize.value) });
      p = propsSize.next + propsSize.value;
    }
    if (p > headerEnd - 4) throw new DecompressError('xz: block header overflows its size');
    const last = filters[filters.length - 1];
    if (!last || last.id !== FILTER_LZMA2) throw new DecompressError('xz: the last filter is not LZMA2');
    for (const f of filters.slice(0, -1)) {
      if (f.id !== FILTER_X86) throw new DecompressError(`xz: unsupported filter 0x${f.id.toString(16)} (only x86 BCJ and LZMA2)`);
    }
    const dataStart = headerEnd;
    const dataEnd = compressedSize !== undefined ? dataStart + compressedSize : lzma2End(r, dataStart, input.length);
    const block: Uint8Array = lzma2.decompressSync(r.slice(dataStart, dataEnd - dataStart));
    for (const f of filters.slice(0, -1).reverse()) {
      const offset = f.props.length === 4 ? new ByteReader(f.props).u32(0) : 0;
      bcjX86Decode(block, offset);
    }
    const checkAt = dataStart + Math.ceil((dataEnd - dataStart) / 4) * 4;
    if (checkId === CHECK_CRC32 && (crc32(block) >>> 0) !== r.u32(checkAt)) throw new DecompressError('xz: block CRC32 mismatch');
    parts.push(block);
    total += block.length;
    if (expectedSize !== undefined && total > expectedSize) throw new DecompressError(`xz: output exceeds the declared ${expectedSize} bytes`);
    at = checkAt + checkBytes;
  }
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(total);
  let o = 0;
  for (const part of parts) {
    out.set(part, o);
    o += part.length;
  }
  return out;
}
