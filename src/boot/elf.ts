// A minimal ELF reader for boot images: the file header, PT_LOAD segments (loaded by physical
// address, as vmlinux and multiboot kernels expect) and PT_NOTE notes. Little-endian x86 only.
// Reference: System V ABI, "ELF Header" and "Program Header" (gabi 4.1), and the x86-64 psABI.
import { ByteReader, TruncatedError } from './bytes.js';

export const ELF_MAGIC = 0x464c457f; // "\x7fELF" read as u32 LE
const PT_LOAD = 1;
const PT_NOTE = 4;
const EM_386 = 3;
const EM_X86_64 = 62;
/** A sanity bound on e_phnum: real kernels have fewer than 16; PN_XNUM (0xffff) is refused. */
const MAX_PROGRAM_HEADERS = 256;

export interface ElfLoadSegment {
  readonly physicalAddress: number;
  /** Virtual addresses may exceed 2^53 (kernel half), hence bigint. */
  readonly virtualAddress: bigint;
  readonly fileOffset: number;
  readonly fileSize: number;
  readonly memorySize: number;
}

export interface ElfNote {
  readonly name: string;
  readonly type: number;
  readonly desc: Uint8Array;
}

export interface ElfImage {
  readonly bits: 32 | 64;
  readonly machine: 'i386' | 'x86_64';
  /** e_entry: a physical address for vmlinux and multiboot images, possibly a virtual one elsewhere. */
  readonly entry: bigint;
  readonly loads: readonly ElfLoadSegment[];
  readonly notes: readonly ElfNote[];
}

export class ElfError extends Error {
  readonly kind = 'elf' as const;
}

export function isElf(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46;
}

export function parseElf(bytes: Uint8Array): ElfImage {
  if (!isElf(bytes)) throw new ElfError('not an ELF file');
  const r = new ByteReader(bytes);
  try {
    const elfClass = r.u8(4);
    if (elfClass !== 1 && elfClass !== 2) throw new ElfError(`unknown ELF class ${elfClass}`);
    if (r.u8(5) !== 1) throw new ElfError('ELF is not little-endian');
    const bits = elfClass === 1 ? 32 : 64;
    const machineCode = r.u16(18);
    if (machineCode !== EM_386 && machineCode !== EM_X86_64) throw new ElfError(`ELF machine ${machineCode} is not x86`);
    const entry = bits === 64 ? r.u64Big(24) : BigInt(r.u32(24));
    const phoff = bits === 64 ? r.u64(32) : r.u32(28);
    const phentsize = r.u16(bits === 64 ? 54 : 42);
    const phnum = r.u16(bits === 64 ? 56 : 44);
    const minEntrySize = bits === 64 ? 56 : 32;
    if (phnum === 0) throw new ElfError('ELF has no program headers');
    if (phnum > MAX_PROGRAM_HEADERS) throw new ElfError(`ELF has ${phnum} program headers (at most ${MAX_PROGRAM_HEADERS})`);
    if (phentsize < minEntrySize) throw new ElfError(`ELF program header size ${phentsize} is too small`);
    const loads: ElfLoadSegment[] = [];
    const notes: ElfNote[] = [];
    for (let i = 0; i < phnum; i++) {
      const at = phoff + i * phentsize;
      const type = r.u32(at);
      const offset = bits === 64 ? r.u64(at + 8) : r.u32(at + 4);
      const vaddr = bits === 64 ? r.u64Big(at + 16) : BigInt(r.u32(at + 8));
      const paddr = bits === 64 ? r.u64(at + 24) : r.u32(at + 12);
      const filesz = bits === 64 ? r.u64(at + 32) : r.u32(at + 16);
      const memsz = bits === 64 ? r.u64(at + 40) : r.u32(at + 20);
      const align = bits === 64 ? r.u64(at + 48) : r.u32(at + 28);
      if (type === PT_LOAD) {
        if (memsz === 0) continue;
        if (filesz > memsz) throw new ElfError(`segment ${i}: file size ${filesz} exceeds memory size ${memsz}`);
        if (!r.has(offset, filesz)) throw new ElfError(`segment ${i}: file bytes [${offset}, +${filesz}) lie past the end of the file`);
        loads.push({ physicalAddress: paddr, virtualAddress: vaddr, fileOffset: offset, fileSize: filesz, memorySize: memsz });
      } else if (type === PT_NOTE) {
        if (!r.has(offset, filesz)) throw new ElfError(`note segment ${i} lies past the end of the file`);
        notes.push(...parseNotes(r.slice(offset, filesz), align === 8 ? 8 : 4));
      }
    }
    if (loads.length === 0) throw new ElfError('ELF has no loadable segments');
    return { bits, machine: machineCode === EM_386 ? 'i386' : 'x86_64', entry, loads, notes };
  } catch (error) {
    if (error instanceof TruncatedError) throw new ElfError(`truncated ELF (${error.message})`);
    throw error;
  }
}

function parseNotes(bytes: Uint8Array, alignment: number): ElfNote[] {
  const r = new ByteReader(bytes);
  const notes: ElfNote[] = [];
  const pad = (n: number): number => Math.ceil(n / alignment) * alignment;
  let at = 0;
  while (at + 12 <= bytes.length) {
    const namesz = r.u32(at);
    const descsz = r.u32(at + 4);
    const type = r.u32(at + 8);
    const nameAt = at + 12;
    const descAt = nameAt + pad(namesz);
    if (!r.has(nameAt, namesz) || !r.has(descAt, descsz)) break; // a malformed tail: ignore it
    const rawName = r.slice(nameAt, namesz);
    const end = rawName.indexOf(0);
    const name = new TextDecoder().decode(end >= 0 ? rawName.subarray(0, end) : rawName);
    notes.push({ name, type, desc: r.slice(descAt, descsz) });
    at = descAt + pad(descsz);
  }
  return notes;
}

/** Lowest physical address and end of the highest PT_LOAD segment. */
export function elfPhysicalExtent(image: ElfImage): { start: number; end: number } {
  let start = Number.MAX_SAFE_INTEGER;
  let end = 0;
  for (const s of image.loads) {
    start = Math.min(start, s.physicalAddress);
    end = Math.max(end, s.physicalAddress + s.memorySize);
  }
  return { start, end };
}
