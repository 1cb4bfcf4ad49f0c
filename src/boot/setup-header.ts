// The x86 Linux boot protocol's setup header (Documentation/arch/x86/boot.rst, "The Real-Mode
// Kernel Header"): the fields this loader reads from a bzImage and writes into boot_params.
// Offsets are from the start of the image, which are also the offsets inside boot_params.
import { ByteReader } from './bytes.js';

export const SETUP_HEADER_START = 0x1f1;
export const HDRS_MAGIC = 0x53726448; // "HdrS"
export const BOOT_FLAG_MAGIC = 0xaa55;

export const HDR = {
  setupSects: 0x1f1,
  bootFlag: 0x1fe,
  jump: 0x200,
  header: 0x202,
  version: 0x206,
  typeOfLoader: 0x210,
  loadflags: 0x211,
  code32Start: 0x214,
  ramdiskImage: 0x218,
  ramdiskSize: 0x21c,
  heapEndPtr: 0x224,
  cmdLinePtr: 0x228,
  initrdAddrMax: 0x22c,
  kernelAlignment: 0x230,
  relocatableKernel: 0x234,
  xloadflags: 0x236,
  cmdlineSize: 0x238,
  payloadOffset: 0x248,
  payloadLength: 0x24c,
  setupData: 0x250,
  prefAddress: 0x258,
  initSize: 0x260,
} as const;

export const LOADFLAG_LOADED_HIGH = 0x01;
export const LOADFLAG_CAN_USE_HEAP = 0x80;
export const XLF_KERNEL_64 = 0x01;
export const XLF_CAN_BE_LOADED_ABOVE_4G = 0x02;

export interface SetupHeader {
  readonly version: number; // e.g. 0x020f for 2.15
  readonly setupSects: number;
  /** The raw header bytes [0x1f1, end of header) to copy into boot_params.hdr. */
  readonly raw: Uint8Array;
  readonly loadflags: number;
  readonly xloadflags: number;
  readonly initrdAddrMax: number;
  readonly cmdlineSize: number;
  readonly kernelAlignment: number;
  readonly prefAddress: number;
  readonly initSize: number;
  /** Offset of the compressed payload from the start of the file (protocol >= 2.08). */
  readonly payloadFileOffset: number;
  readonly payloadLength: number;
}

export class SetupHeaderError extends Error {
  readonly kind = 'setup-header' as const;
}

/** True when the bytes carry a Linux setup header ("HdrS" at 0x202, boot flag 0xAA55). */
export function hasSetupHeader(bytes: Uint8Array): boolean {
  const r = new ByteReader(bytes);
  return r.has(0x202, 4) && r.u32(HDR.header) === HDRS_MAGIC && r.u16(HDR.bootFlag) === BOOT_FLAG_MAGIC;
}

export function parseSetupHeader(bytes: Uint8Array): SetupHeader {
  const r = new ByteReader(bytes);
  if (!hasSetupHeader(bytes)) throw new SetupHeaderError('no Linux setup header ("HdrS" at 0x202)');
  const version = r.u16(HDR.version);
  // payload_offset/payload_length exist from protocol 2.08 (kernel 2.6.26); older images cannot
  // be extracted without running their own decompressor.
  if (version < 0x0208) throw new SetupHeaderError(`boot protocol ${formatVersion(version)} is older than 2.08 (no payload fields)`);
  // "If setup_sects is 0, the real value is 4." (boot.rst)
  const setupSects = r.u8(HDR.setupSects) || 4;
  // The header ends at 0x202 + the jump instruction's displacement byte (boot.rst, "the setup
  // header ... ends at 0x0202 + byte at 0x0201").
  const headerEnd = Math.min(0x202 + r.u8(0x201), 0x290);
  if (!r.has(SETUP_HEADER_START, headerEnd - SETUP_HEADER_START)) throw new SetupHeaderError('setup header is truncated');
  const protectedModeStart = (setupSects + 1) * 512;
  const payloadOffset = r.u32(HDR.payloadOffset);
  const payloadLength = r.u32(HDR.payloadLength);
  const payloadFileOffset = protectedModeStart + payloadOffset;
  if (payloadLength === 0) throw new SetupHeaderError('setup header has no payload (payload_length 0)');
  if (!r.has(payloadFileOffset, payloadLength)) {
    throw new SetupHeaderError(`payload [${payloadFileOffset}, +${payloadLength}) lies past the end of the ${bytes.length}-byte file (truncated?)`);
  }
  return {
    version,
    setupSects,
    raw: bytes.slice(SETUP_HEADER_START, headerEnd),
    loadflags: r.u8(HDR.loadflags),
    xloadflags: version >= 0x020c ? r.u16(HDR.xloadflags) : 0,
    initrdAddrMax: version >= 0x0203 ? r.u32(HDR.initrdAddrMax) : 0x37ffffff,
    cmdlineSize: version >= 0x0206 ? r.u32(HDR.cmdlineSize) : 255,
    kernelAlignment: r.u32(HDR.kernelAlignment),
    prefAddress: version >= 0x020a ? r.u64(HDR.prefAddress) : 0x100000,
    initSize: version >= 0x020a ? r.u32(HDR.initSize) : 0,
    payloadFileOffset,
    payloadLength,
  };
}

export function formatVersion(version: number): string {
  return `${version >> 8}.${(version & 0xff).toString().padStart(2, '0')}`;
}
