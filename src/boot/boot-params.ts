// The Linux "zero page" (struct boot_params, 4 KiB) for the 64-bit boot protocol.
// Offsets: Documentation/arch/x86/zero-page.rst and boot.rst ("64-bit Boot Protocol"; the setup
// header sits at 0x1f1 exactly as in the bzImage).
import { ByteWriter } from './bytes.js';
import type { MemoryMapEntry } from './boot-plan.js';
import { MEMORY_TYPE_CODE } from './memory-map.js';
import { BOOT_FLAG_MAGIC, HDR, HDRS_MAGIC, LOADFLAG_LOADED_HIGH, SETUP_HEADER_START } from './setup-header.js';

export const BOOT_PARAMS_SIZE = 4096;
export const ZERO_PAGE = {
  acpiRsdpAddr: 0x070, // u64, protocol 2.14
  extRamdiskImage: 0x0c0,
  extRamdiskSize: 0x0c4,
  extCmdLinePtr: 0x0c8,
  e820Entries: 0x1e8,
  sentinel: 0x1ef,
  e820Table: 0x2d0,
} as const;
/** E820_MAX_ENTRIES_ZEROPAGE: the table in boot_params holds 128 entries of 20 bytes. */
export const E820_MAX_ENTRIES = 128;
/** type_of_loader 0xff: "undefined" boot loader (boot.rst, type_of_loader). */
export const LOADER_TYPE_UNDEFINED = 0xff;

export interface BootParamsInput {
  /** Setup header bytes from a bzImage (0x1f1 onwards); absent for a plain ELF vmlinux. */
  readonly setupHeader?: Uint8Array;
  readonly cmdlineAddress: number;
  readonly initrd?: { readonly address: number; readonly size: number };
  readonly memoryMap: readonly MemoryMapEntry[];
  readonly rsdpAddress?: number;
}

export class BootParamsError extends Error {
  readonly kind = 'boot-params' as const;
}

export function buildBootParams(input: BootParamsInput): Uint8Array {
  const w = new ByteWriter(BOOT_PARAMS_SIZE);
  if (input.setupHeader) {
    w.set(SETUP_HEADER_START, input.setupHeader.subarray(0, BOOT_PARAMS_SIZE - SETUP_HEADER_START));
  } else {
    // A plain vmlinux has no header; the kernel checks the boot flag and "HdrS" magic and reads
    // the protocol version to decide which fields to trust.
    w.u16(HDR.bootFlag, BOOT_FLAG_MAGIC);
    w.u32(HDR.header, HDRS_MAGIC);
    w.u16(HDR.version, 0x020f);
    w.u32(HDR.kernelAlignment, 0x0100_0000);
    w.u32(HDR.cmdlineSize, 2047);
    w.u32(HDR.initrdAddrMax, 0x7fff_ffff);
  }
  w.u8(HDR.typeOfLoader, LOADER_TYPE_UNDEFINED);
  w.u8(HDR.loadflags, (w.bytes[HDR.loadflags]! | LOADFLAG_LOADED_HIGH) & 0xff);
  w.u32(HDR.cmdLinePtr, lo32(input.cmdlineAddress));
  w.u32(ZERO_PAGE.extCmdLinePtr, hi32(input.cmdlineAddress));
  w.u32(HDR.ramdiskImage, lo32(input.initrd?.address ?? 0));
  w.u32(HDR.ramdiskSize, lo32(input.initrd?.size ?? 0));
  w.u32(ZERO_PAGE.extRamdiskImage, hi32(input.initrd?.address ?? 0));
  w.u32(ZERO_PAGE.extRamdiskSize, hi32(input.initrd?.size ?? 0));
  if (input.rsdpAddress !== undefined) w.u64(ZERO_PAGE.acpiRsdpAddr, input.rsdpAddress);
  if (input.memoryMap.length > E820_MAX_ENTRIES) {
    throw new BootParamsError(`memory map has ${input.memoryMap.length} entries; boot_params holds at most ${E820_MAX_ENTRIES}`);
  }
  w.u8(ZERO_PAGE.e820Entries, input.memoryMap.length);
  input.memoryMap.forEach((e, i) => {
    const at = ZERO_PAGE.e820Table + i * 20;
    w.u64(at, e.address).u64(at + 8, e.size).u32(at + 16, MEMORY_TYPE_CODE[e.type]);
  });
  return w.bytes;
}

function lo32(value: number): number {
  return value % 2 ** 32;
}
function hi32(value: number): number {
  return Math.floor(value / 2 ** 32);
}
