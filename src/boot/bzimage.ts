// bzImage -> ELF vmlinux on the host: parse the setup header, cut out the compressed payload
// (payload_offset/payload_length, protocol >= 2.08) and decompress it. The kernel's own
// decompressor never runs (it is slow under emulated kernel mode; see HOST-NOTES.md).
import { DecompressError, decompressKernelPayload, type Compression } from './decompress/index.js';
import { isElf } from './elf.js';
import { parseSetupHeader, type SetupHeader } from './setup-header.js';

export interface ExtractedKernel {
  readonly header: SetupHeader;
  readonly compression: Compression;
  readonly elf: Uint8Array;
}

export function extractBzImage(image: Uint8Array): ExtractedKernel {
  const header = parseSetupHeader(image);
  const payload = image.subarray(header.payloadFileOffset, header.payloadFileOffset + header.payloadLength);
  const { format, bytes } = decompressKernelPayload(payload);
  if (!isElf(bytes)) throw new DecompressError(`the ${format} payload does not decompress to an ELF vmlinux`);
  return { header, compression: format, elf: bytes };
}
