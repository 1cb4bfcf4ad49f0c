// PVH boot (xen/include/public/arch-x86/hvm/start_info.h; Linux arch/x86/platform/pvh): a
// 32-bit protected-mode entry named by the ELF note XEN_ELFNOTE_PHYS32_ENTRY, with EBX pointing
// to a struct hvm_start_info (version 1: with a memory map).
import { ByteReader, ByteWriter } from './bytes.js';
import type { MemoryMapEntry } from './boot-plan.js';
import type { ElfImage } from './elf.js';
import { MEMORY_TYPE_CODE } from './memory-map.js';

export const XEN_ELFNOTE_PHYS32_ENTRY = 18;
export const HVM_START_MAGIC = 0x336ec578;
export const HVM_START_INFO_SIZE = 56;
export const HVM_MODLIST_ENTRY_SIZE = 32;
export const HVM_MEMMAP_ENTRY_SIZE = 24;

/** The PVH entry point from the kernel's Xen notes, if it has one. */
export function findPvhEntry(elf: ElfImage): number | undefined {
  const note = elf.notes.find((n) => n.name === 'Xen' && n.type === XEN_ELFNOTE_PHYS32_ENTRY);
  if (!note) return undefined;
  const r = new ByteReader(note.desc);
  if (note.desc.length >= 8) return r.u64(0);
  if (note.desc.length >= 4) return r.u32(0);
  return undefined;
}

export interface StartInfoInput {
  readonly cmdlineAddress: number;
  readonly rsdpAddress?: number;
  readonly modlistAddress?: number;
  readonly moduleCount: number;
  readonly memmapAddress: number;
  readonly memmapEntries: number;
}

export function buildStartInfo(input: StartInfoInput): Uint8Array {
  const w = new ByteWriter(HVM_START_INFO_SIZE);
  w.u32(0, HVM_START_MAGIC).u32(4, 1).u32(8, 0).u32(12, input.moduleCount);
  w.u64(16, input.modlistAddress ?? 0).u64(24, input.cmdlineAddress).u64(32, input.rsdpAddress ?? 0);
  w.u64(40, input.memmapAddress).u32(48, input.memmapEntries).u32(52, 0);
  return w.bytes;
}

export function buildModlist(modules: ReadonlyArray<{ address: number; size: number; cmdlineAddress?: number }>): Uint8Array {
  const w = new ByteWriter(Math.max(1, modules.length) * HVM_MODLIST_ENTRY_SIZE);
  modules.forEach((m, i) => w.u64(i * 32, m.address).u64(i * 32 + 8, m.size).u64(i * 32 + 16, m.cmdlineAddress ?? 0));
  return w.bytes;
}

export function buildPvhMemmap(map: readonly MemoryMapEntry[]): Uint8Array {
  const w = new ByteWriter(Math.max(1, map.length) * HVM_MEMMAP_ENTRY_SIZE);
  map.forEach((e, i) => w.u64(i * 24, e.address).u64(i * 24 + 8, e.size).u32(i * 24 + 16, MEMORY_TYPE_CODE[e.type]));
  return w.bytes;
}
