// Turns an ELF image's PT_LOAD segments into memory segments at their physical addresses,
// claiming each range in the placement so nothing else lands on top of it.
import type { MemorySegment } from './boot-plan.js';
import type { ElfImage } from './elf.js';
import type { GuestPlacement } from './placement.js';

export class ElfLoadError extends Error {
  readonly kind = 'elf-load' as const;
}

export function loadElfSegments(elf: ElfImage, file: Uint8Array, placement: GuestPlacement, what: string): { segments: MemorySegment[]; start: number; end: number } {
  const segments: MemorySegment[] = [];
  let start = Number.MAX_SAFE_INTEGER;
  let end = 0;
  elf.loads.forEach((load, i) => {
    placement.claim(load.physicalAddress, load.memorySize, `${what} segment ${i}`);
    if (load.fileSize > 0) {
      segments.push({ address: load.physicalAddress, bytes: file.subarray(load.fileOffset, load.fileOffset + load.fileSize), what: `${what} segment ${i}` });
    }
    if (load.memorySize > load.fileSize) {
      // The zero-initialised tail (.bss): written explicitly so a re-used memory never leaks in.
      segments.push({ address: load.physicalAddress + load.fileSize, bytes: new Uint8Array(load.memorySize - load.fileSize), what: `${what} segment ${i} (zeroed)` });
    }
    start = Math.min(start, load.physicalAddress);
    end = Math.max(end, load.physicalAddress + load.memorySize);
  });
  return { segments, start, end };
}

/** e_entry as a physical address: taken as is when it falls in a segment's physical range, else translated from its virtual range. */
export function physicalEntry(elf: ElfImage, entry: bigint = elf.entry): number {
  for (const s of elf.loads) {
    if (entry >= BigInt(s.physicalAddress) && entry < BigInt(s.physicalAddress + s.memorySize)) return Number(entry);
  }
  for (const s of elf.loads) {
    if (entry >= s.virtualAddress && entry < s.virtualAddress + BigInt(s.memorySize)) return s.physicalAddress + Number(entry - s.virtualAddress);
  }
  throw new ElfLoadError(`entry point 0x${entry.toString(16)} lies in no loadable segment`);
}
