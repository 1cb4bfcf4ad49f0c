// Helpers shared by the boot tests: a tiny ELF writer for synthetic kernels, the host's real
// Debian kernel, and readers that decode guest structures back out of a BootPlan.
import { readdirSync } from 'node:fs';
import type { BootPlan } from '../../src/boot/boot-plan.js';

export interface FakeSegment {
  readonly paddr: number;
  readonly vaddr?: bigint;
  readonly data: Uint8Array;
  readonly memsz?: number;
}

/** An ELF64 (or ELF32) x86 executable with the given PT_LOAD segments and optional notes. */
export function makeElf(opts: { bits: 32 | 64; entry: bigint | number; segments: readonly FakeSegment[]; notes?: ReadonlyArray<{ name: string; type: number; desc: Uint8Array }>; extraHeader?: { offset: number; bytes: Uint8Array } }): Uint8Array {
  const is64 = opts.bits === 64;
  const ehsize = is64 ? 64 : 52;
  const phentsize = is64 ? 56 : 32;
  const noteBytes = encodeNotes(opts.notes ?? []);
  const phnum = opts.segments.length + (noteBytes.length > 0 ? 1 : 0);
  let offset = Math.ceil((ehsize + phnum * phentsize) / 16) * 16;
  if (opts.extraHeader) offset = Math.max(offset, opts.extraHeader.offset + opts.extraHeader.bytes.length);
  const placed = opts.segments.map((s) => {
    const at = Math.ceil(offset / 16) * 16;
    offset = at + s.data.length;
    return at;
  });
  const noteAt = Math.ceil(offset / 4) * 4;
  const total = noteAt + noteBytes.length;
  const out = new Uint8Array(total);
  const v = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, is64 ? 2 : 1, 1, 1]);
  v.setUint16(16, 2, true); // ET_EXEC
  v.setUint16(18, is64 ? 62 : 3, true);
  v.setUint32(20, 1, true);
  if (is64) {
    v.setBigUint64(24, BigInt(opts.entry), true);
    v.setBigUint64(32, BigInt(ehsize), true);
    v.setUint16(52, ehsize, true);
    v.setUint16(54, phentsize, true);
    v.setUint16(56, phnum, true);
  } else {
    v.setUint32(24, Number(opts.entry), true);
    v.setUint32(28, ehsize, true);
    v.setUint16(40, ehsize, true);
    v.setUint16(42, phentsize, true);
    v.setUint16(44, phnum, true);
  }
  const writePh = (i: number, type: number, fileOffset: number, vaddr: bigint, paddr: number, filesz: number, memsz: number): void => {
    const at = ehsize + i * phentsize;
    v.setUint32(at, type, true);
    if (is64) {
      v.setUint32(at + 4, 7, true);
      v.setBigUint64(at + 8, BigInt(fileOffset), true);
      v.setBigUint64(at + 16, vaddr, true);
      v.setBigUint64(at + 24, BigInt(paddr), true);
      v.setBigUint64(at + 32, BigInt(filesz), true);
      v.setBigUint64(at + 40, BigInt(memsz), true);
      v.setBigUint64(at + 48, 4n, true);
    } else {
      v.setUint32(at + 4, fileOffset, true);
      v.setUint32(at + 8, Number(vaddr), true);
      v.setUint32(at + 12, paddr, true);
      v.setUint32(at + 16, filesz, true);
      v.setUint32(at + 20, memsz, true);
      v.setUint32(at + 24, 7, true);
      v.setUint32(at + 28, 4, true);
    }
  };
  opts.segments.forEach((s, i) => {
    out.set(s.data, placed[i]!);
    writePh(i, 1, placed[i]!, s.vaddr ?? BigInt(s.paddr), s.paddr, s.data.length, s.memsz ?? s.data.length);
  });
  if (noteBytes.length > 0) {
    out.set(noteBytes, noteAt);
    writePh(opts.segments.length, 4, noteAt, 0n, 0, noteBytes.length, noteBytes.length);
  }
  if (opts.extraHeader) out.set(opts.extraHeader.bytes, opts.extraHeader.offset);
  return out;
}

function encodeNotes(notes: ReadonlyArray<{ name: string; type: number; desc: Uint8Array }>): Uint8Array {
  const parts: number[] = [];
  for (const n of notes) {
    const name = new TextEncoder().encode(`${n.name}\0`);
    const head = new DataView(new ArrayBuffer(12));
    head.setUint32(0, name.length, true);
    head.setUint32(4, n.desc.length, true);
    head.setUint32(8, n.type, true);
    parts.push(...new Uint8Array(head.buffer), ...name, ...new Array((4 - (name.length % 4)) % 4).fill(0), ...n.desc, ...new Array((4 - (n.desc.length % 4)) % 4).fill(0));
  }
  return Uint8Array.from(parts);
}

/** The newest /boot/vmlinuz-* on this machine, or undefined. */
export function hostKernel(): string | undefined {
  try {
    const names = readdirSync('/boot').filter((n) => n.startsWith('vmlinuz-')).sort();
    const last = names[names.length - 1];
    return last ? `/boot/${last}` : undefined;
  } catch {
    return undefined;
  }
}

/** The bytes a plan puts at [address, address+size), assembled from its segments (zero elsewhere). */
export function readPlan(plan: BootPlan, address: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (const s of plan.segments) {
    const from = Math.max(address, s.address);
    const to = Math.min(address + size, s.address + s.bytes.length);
    if (from < to) out.set(s.bytes.subarray(from - s.address, to - s.address), from - address);
  }
  return out;
}

export function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function cStringAt(plan: BootPlan, address: number, max = 4096): string {
  const bytes = readPlan(plan, address, max);
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(bytes.subarray(0, end < 0 ? max : end));
}

/** Asserts no two segments overlap; returns the sorted list. */
export function overlappingSegments(plan: BootPlan): string[] {
  const sorted = [...plan.segments].filter((s) => s.bytes.length > 0).sort((a, b) => a.address - b.address);
  const problems: string[] = [];
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (prev.address + prev.bytes.length > cur.address) problems.push(`${prev.what} overlaps ${cur.what}`);
  }
  return problems;
}
