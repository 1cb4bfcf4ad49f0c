// The guest memory map a boot protocol reports (e820, multiboot mmap, PVH memmap): RAM minus
// the reserved ranges, plus the reserved ranges themselves, sorted and with neighbours of one
// type merged. The MMIO hole is simply absent unless the platform passes it as reserved.
import type { RamRange } from '../memory/layout.js';
import type { MemoryMapEntry } from './boot-plan.js';

/** e820 / multiboot / PVH type codes (ACPI spec, "Address Range Types"). */
export const MEMORY_TYPE_CODE: Readonly<Record<MemoryMapEntry['type'], number>> = { ram: 1, reserved: 2, acpi: 3, nvs: 4 };

export function buildMemoryMap(ram: readonly RamRange[], reserved: readonly MemoryMapEntry[]): MemoryMapEntry[] {
  const entries: MemoryMapEntry[] = [];
  const holes = reserved.filter((r) => r.size > 0).sort((a, b) => a.address - b.address);
  for (const range of ram) {
    let cursor: number = range.start;
    const end = range.start + range.size;
    for (const hole of holes) {
      const holeEnd = hole.address + hole.size;
      if (holeEnd <= cursor || hole.address >= end) continue;
      if (hole.address > cursor) entries.push({ address: cursor, size: hole.address - cursor, type: 'ram' });
      cursor = Math.max(cursor, holeEnd);
    }
    if (cursor < end) entries.push({ address: cursor, size: end - cursor, type: 'ram' });
  }
  // Reserved ranges keep their own extent, even where they overlap each other's neighbours.
  entries.push(...holes.filter((h) => h.type !== 'ram'));
  entries.sort((a, b) => a.address - b.address || a.size - b.size);
  const merged: MemoryMapEntry[] = [];
  for (const e of entries) {
    const last = merged[merged.length - 1];
    if (last && last.type === e.type && last.address + last.size >= e.address) {
      merged[merged.length - 1] = { address: last.address, type: last.type, size: Math.max(last.address + last.size, e.address + e.size) - last.address };
    } else {
      merged.push(e);
    }
  }
  return merged;
}

/** Bytes of RAM below 640 KiB and contiguous from 1 MiB, in KiB (multiboot mem_lower/mem_upper). */
export function lowerUpperMemoryKiB(map: readonly MemoryMapEntry[]): { lower: number; upper: number } {
  let lower = 0;
  let upper = 0;
  for (const e of map) {
    if (e.type !== 'ram') continue;
    if (e.address === 0) lower = Math.min(e.size, 640 * 1024) / 1024;
    if (e.address <= 0x100000 && e.address + e.size > 0x100000) upper = (e.address + e.size - 0x100000) / 1024;
  }
  return { lower: Math.floor(lower), upper: Math.floor(Math.min(upper, 0xffffffff)) };
}
