// Initial x86 CPU state as data: a flat GDT, identity-mapped page tables and the register
// values for 64-bit long mode (Linux 64-bit boot protocol) or 32-bit protected mode without
// paging (multiboot, PVH). Intel SDM vol. 3A, 3.4.5 (segment descriptors), 4.5 (4-level paging).
import { ByteWriter } from './bytes.js';
import type { CpuStartState, SegmentState } from './boot-plan.js';

/** Selectors of the boot GDT, as the Linux boot protocol's 64-bit entry names them (__BOOT_CS/DS). */
export const BOOT_CS = 0x10;
export const BOOT_DS = 0x18;
export const BOOT_TSS = 0x20;
export const GDT_ENTRIES = 5;
export const GDT_SIZE = GDT_ENTRIES * 8;

const CR0_PE = 1 << 0;
const CR0_ET = 1 << 4;
const CR0_PG = 0x8000_0000;
const CR4_PAE = 1 << 5;
const EFER_LME = 1 << 8;
const EFER_LMA = 1 << 10;
const RFLAGS_RESERVED_ONE = 1 << 1;

interface DescriptorFields {
  base: number;
  limit: number; // 20-bit raw limit
  type: number;
  s: boolean;
  dpl: number;
  present: boolean;
  l: boolean;
  db: boolean;
  g: boolean;
}

function encodeDescriptor(d: DescriptorFields): bigint {
  const limit = BigInt(d.limit & 0xfffff);
  const base = BigInt(d.base >>> 0);
  const access = BigInt((d.type & 0xf) | (d.s ? 0x10 : 0) | ((d.dpl & 3) << 5) | (d.present ? 0x80 : 0));
  const flags = BigInt((d.l ? 0x2 : 0) | (d.db ? 0x4 : 0) | (d.g ? 0x8 : 0));
  return (limit & 0xffffn) | ((base & 0xffffffn) << 16n) | (access << 40n) | (((limit >> 16n) & 0xfn) << 48n) | (flags << 52n) | (((base >> 24n) & 0xffn) << 56n);
}

function segmentFrom(selector: number, d: DescriptorFields): SegmentState {
  return {
    base: d.base,
    limit: d.g ? d.limit * 4096 + 0xfff : d.limit,
    selector,
    type: d.type,
    present: d.present,
    dpl: d.dpl,
    db: d.db,
    s: d.s,
    l: d.l,
    g: d.g,
  };
}

const FLAT = { base: 0, limit: 0xfffff, s: true, dpl: 0, present: true, g: true } as const;
const CODE64: DescriptorFields = { ...FLAT, type: 0xb, l: true, db: false }; // execute/read, accessed
const CODE32: DescriptorFields = { ...FLAT, type: 0xb, l: false, db: true };
const DATA: DescriptorFields = { ...FLAT, type: 0x3, l: false, db: true }; // read/write, accessed
const TSS: DescriptorFields = { base: 0, limit: 0x67, type: 0xb, s: false, dpl: 0, present: true, l: false, db: false, g: false }; // 32-bit busy TSS

export type CpuMode = CpuStartState['mode'];

/** GDT bytes: null, null, code (0x10), data (0x18), TSS (0x20). */
export function buildGdt(mode: CpuMode): Uint8Array {
  const w = new ByteWriter(GDT_SIZE);
  w.u64(BOOT_CS, encodeDescriptor(mode === 'long64' ? CODE64 : CODE32));
  w.u64(BOOT_DS, encodeDescriptor(DATA));
  w.u64(BOOT_TSS, encodeDescriptor(TSS));
  return w.bytes;
}

/** Bytes of identity page tables covering [0, 4 GiB): PML4, PDPT, 4 page directories of 2 MiB pages. */
export const PAGE_TABLES_SIZE = 6 * 4096;

export function buildIdentityPageTables(base: number): Uint8Array {
  if (base % 4096 !== 0) throw new RangeError('page tables must be 4 KiB aligned');
  const w = new ByteWriter(PAGE_TABLES_SIZE);
  const PRESENT_RW = 0x3;
  const PAGE_SIZE_BIT = 0x80;
  const pdpt = base + 0x1000;
  w.u64(0, pdpt + PRESENT_RW);
  for (let gib = 0; gib < 4; gib++) {
    const pd = base + 0x2000 + gib * 0x1000;
    w.u64(0x1000 + gib * 8, pd + PRESENT_RW);
    for (let i = 0; i < 512; i++) {
      const physical = gib * 2 ** 30 + i * 2 ** 21;
      w.u64(0x2000 + gib * 0x1000 + i * 8, physical + (PRESENT_RW | PAGE_SIZE_BIT));
    }
  }
  return w.bytes;
}

export interface StartRegisters {
  readonly rip: number;
  readonly rsp: number;
  readonly gdtBase: number;
  readonly gpr: CpuStartState['gpr'];
  /** Long mode only: address of the PML4. */
  readonly cr3?: number;
}

export function cpuStartState(mode: CpuMode, regs: StartRegisters): CpuStartState {
  const code = segmentFrom(BOOT_CS, mode === 'long64' ? CODE64 : CODE32);
  const data = segmentFrom(BOOT_DS, DATA);
  const long = mode === 'long64';
  if (long && regs.cr3 === undefined) throw new RangeError('long mode needs page tables');
  return {
    mode,
    rip: regs.rip,
    rsp: regs.rsp,
    rflags: RFLAGS_RESERVED_ONE, // IF clear: interrupts off
    gpr: regs.gpr,
    cr0: long ? (CR0_PE | CR0_ET) + CR0_PG : CR0_PE | CR0_ET, // added, not OR-ed: bit 31 would turn an int32 negative
    cr3: long ? (regs.cr3 ?? 0) : 0,
    cr4: long ? CR4_PAE : 0,
    efer: long ? EFER_LME | EFER_LMA : 0,
    cs: code,
    ds: data,
    es: data,
    fs: data,
    gs: data,
    ss: data,
    tr: segmentFrom(BOOT_TSS, TSS),
    // An empty LDT (type 2) marked present: the machine passes segments to KVM as usable.
    ldt: { base: 0, limit: 0xffff, selector: 0, type: 0x2, present: true, dpl: 0, db: false, s: false, l: false, g: false },
    gdt: { base: regs.gdtBase, limit: GDT_SIZE - 1 },
    idt: { base: 0, limit: 0 },
  };
}
