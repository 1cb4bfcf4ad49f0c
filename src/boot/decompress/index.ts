// Host-side decompression of a bzImage payload. The format is found from the payload's magic,
// as the kernel's own build tags it (arch/x86/boot/compressed/Makefile: vmlinux.bin.{gz,bz2,
// lzma,xz,lzo,lz4,zst}); every format but gzip has the uncompressed size appended as a u32 LE
// (scripts/Makefile.lib "size_append"), and gzip's own trailer ends with the same value.
import { createRequire } from 'node:module';
import { gunzipSync } from 'node:zlib';
import { decompress as zstdDecompress } from 'fzstd';
import { DecompressError } from './errors.js';
import { decompressLz4Legacy } from './lz4-legacy.js';
import { decompressXz } from './xz.js';

export { DecompressError } from './errors.js';

const require = createRequire(import.meta.url);
const { lzma } = require('@napi-rs/lzma') as { lzma: { decompressSync(input: Uint8Array): Buffer } };
const Bunzip = require('seek-bzip') as { decode(input: Buffer, output?: number): Buffer };

export type Compression = 'gzip' | 'xz' | 'zstd' | 'lz4' | 'bzip2' | 'lzma' | 'lzo';

/** Refuse to inflate anything larger: no kernel image is near this, and it bounds host memory. */
export const MAX_DECOMPRESSED_SIZE = 1024 * 1024 * 1024;
export const MAX_COMPRESSION_RATIO = 256;

const MAGICS: ReadonlyArray<{ format: Compression; bytes: readonly number[] }> = [
  { format: 'gzip', bytes: [0x1f, 0x8b] },
  { format: 'xz', bytes: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00] },
  { format: 'zstd', bytes: [0x28, 0xb5, 0x2f, 0xfd] },
  { format: 'lz4', bytes: [0x02, 0x21, 0x4c, 0x18] },
  { format: 'bzip2', bytes: [0x42, 0x5a, 0x68] },
  { format: 'lzma', bytes: [0x5d, 0x00, 0x00] },
  { format: 'lzo', bytes: [0x89, 0x4c, 0x5a, 0x4f] },
];

export function detectCompression(payload: Uint8Array): Compression | undefined {
  return MAGICS.find((m) => m.bytes.every((b, i) => payload[i] === b))?.format;
}

/** Decompresses a kernel payload (with its appended size); returns the format and the bytes. */
export function decompressKernelPayload(payload: Uint8Array): { format: Compression; bytes: Uint8Array } {
  const format = detectCompression(payload);
  if (format === undefined) throw new DecompressError('payload has no known compression magic');
  if (payload.length < 8) throw new DecompressError(`${format} payload is truncated`);
  const declared = new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getUint32(payload.length - 4, true);
  // Output buffers are sized from this untrusted number, so bound it: by the absolute cap and
  // by a compression ratio no kernel reaches (kernels compress 4-10x).
  const plausible = Math.min(MAX_DECOMPRESSED_SIZE, payload.length * MAX_COMPRESSION_RATIO + 1024 * 1024);
  if (declared === 0 || declared > plausible) throw new DecompressError(`${format} payload declares an implausible uncompressed size of ${declared} bytes`);
  const body = payload.subarray(0, payload.length - 4);
  let bytes: Uint8Array;
  try {
    switch (format) {
      case 'gzip':
        bytes = gunzipSync(payload, { maxOutputLength: plausible });
        break;
      case 'xz':
        bytes = decompressXz(body, declared);
        break;
      case 'zstd':
        bytes = zstdDecompress(body, new Uint8Array(declared));
        break;
      case 'lz4':
        bytes = decompressLz4Legacy(body, declared);
        break;
      case 'bzip2':
        bytes = Bunzip.decode(Buffer.from(body.buffer, body.byteOffset, body.byteLength), declared);
        break;
      case 'lzma':
        bytes = lzma.decompressSync(body);
        break;
      case 'lzo':
        throw new DecompressError('LZO-compressed kernels are not supported (rebuild with another KERNEL_ compression)');
    }
  } catch (error) {
    if (error instanceof DecompressError) throw error;
    throw new DecompressError(`${format} payload is corrupt: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  if (bytes.length !== declared) throw new DecompressError(`${format} payload decoded to ${bytes.length} bytes but declares ${declared}`);
  return { format, bytes };
}
