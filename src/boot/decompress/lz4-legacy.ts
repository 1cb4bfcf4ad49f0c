// The LZ4 "legacy" frame that `lz4 -l` writes and the kernel's unlz4 reads: the magic
// 0x184C2102, then blocks each preceded by its compressed size (u32 LE), each decoding to at most
// 8 MiB. No checksums. The block format is LZ4's (lz4_Block_format.md): sequences of a token
// (literal length high nibble, match length low nibble), literals, a 16-bit back offset.
import { DecompressError } from './errors.js';

export const LZ4_LEGACY_MAGIC = 0x184c2102;
const LEGACY_BLOCK_MAX = 8 * 1024 * 1024;

export function decompressLz4Legacy(input: Uint8Array, expectedSize: number): Uint8Array {
  const view = new DataView(input.buffer, input.byteOffset, input.byteLength);
  if (input.length < 4 || view.getUint32(0, true) !== LZ4_LEGACY_MAGIC) throw new DecompressError('lz4: bad legacy magic');
  const out = new Uint8Array(expectedSize);
  let written = 0;
  let at = 4;
  while (at + 4 <= input.length) {
    const size = view.getUint32(at, true);
    at += 4;
    if (size === LZ4_LEGACY_MAGIC) continue; // a concatenated stream: its header
    if (size === 0 || at + size > input.length) throw new DecompressError(`lz4: block of ${size} bytes at offset ${at - 4} runs past the input`);
    const produced = decodeBlock(input, at, at + size, out, written, Math.min(out.length, written + LEGACY_BLOCK_MAX));
    written = produced;
    at += size;
  }
  if (written !== expectedSize) throw new DecompressError(`lz4: produced ${written} bytes, expected ${expectedSize}`);
  return out;
}

/** Decodes one LZ4 block from in[start, end) into out at `o` (never past `outLimit`); returns the new output position. */
function decodeBlock(src: Uint8Array, start: number, end: number, out: Uint8Array, o: number, outLimit: number): number {
  const blockStart = o;
  let p = start;
  for (;;) {
    if (p >= end) throw new DecompressError('lz4: block ends inside a sequence');
    const token = src[p++]!;
    let literals = token >>> 4;
    if (literals === 15) {
      let b: number;
      do {
        if (p >= end) throw new DecompressError('lz4: truncated literal length');
        b = src[p++]!;
        literals += b;
      } while (b === 255);
    }
    if (p + literals > end || o + literals > outLimit) throw new DecompressError('lz4: literals run past the block');
    out.set(src.subarray(p, p + literals), o);
    p += literals;
    o += literals;
    if (p === end) return o; // the last sequence has literals only
    if (p + 2 > end) throw new DecompressError('lz4: truncated match offset');
    const offset = src[p]! | (src[p + 1]! << 8);
    p += 2;
    // Legacy-frame blocks are independent (the kernel decodes each with LZ4_decompress_safe), so
    // a match may not reach into the previous block.
    if (offset === 0 || offset > o - blockStart) {
      throw new DecompressError('lz4: match offset points before the block');
    }
    let length = (token & 0x0f) + 4;
    if ((token & 0x0f) === 15) {
      let b: number;
      do {
        if (p >= end) throw new DecompressError('lz4: truncated match length');
        b = src[p++]!;
        length += b;
      } while (b === 255);
    }
    if (o + length > outLimit) throw new DecompressError('lz4: match runs past the block');
    let from = o - offset;
    if (offset >= length) {
      out.copyWithin(o, from, from + length);
      o += length;
    } else {
      for (let k = 0; k < length; k++) out[o++] = out[from++]!;
    }
  }
}
