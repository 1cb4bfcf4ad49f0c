// A KVM vCPU: its shared kvm_run page and register state as plain objects. KVM_RUN itself is
// called from the vCPU's worker thread (src/machine/vcpu-loop.ts) through the same fd.
import * as libc from '../native/libc.js';
import * as K from './constants.js';
import { ioctlError } from './errors.js';
import { FPU, REG_NAMES, SEGMENT, SIZEOF, SREGS, VCPU_EVENTS } from './layouts.js';
import { encodeCpuidEntries, type CpuidEntry } from './cpuid-codec.js';

export type RegName = (typeof REG_NAMES)[number];
export type Regs = Record<RegName, bigint>;

export interface Segment {
  base: bigint;
  limit: number;
  selector: number;
  type: number;
  present: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
  avl: number;
  unusable: number;
}

export interface DescriptorTable {
  base: bigint;
  limit: number;
}

export interface Sregs {
  cs: Segment; ds: Segment; es: Segment; fs: Segment; gs: Segment; ss: Segment; tr: Segment; ldt: Segment;
  gdt: DescriptorTable;
  idt: DescriptorTable;
  cr0: bigint; cr2: bigint; cr3: bigint; cr4: bigint; cr8: bigint; efer: bigint; apicBase: bigint;
}

export interface VcpuEvents {
  exception: { injected: number; nr: number; hasErrorCode: number; pending: number; errorCode: number };
  raw: Buffer;
}

const SEGMENT_NAMES = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;

export class KvmVcpu {
  constructor(readonly fd: number, readonly id: number, readonly mmapSize: number) {}

  private call(name: string, request: number, arg: Uint8Array): void {
    if (libc.ioctlPtr(this.fd, request, arg) < 0) throw ioctlError(name, libc.lastErrno());
  }

  /** Maps this vCPU's kvm_run page in the calling thread. */
  mapRun(): libc.Mapping {
    return libc.mmap(this.mmapSize, libc.PROT_READ | libc.PROT_WRITE, libc.MAP_SHARED, this.fd, 0);
  }

  getRegs(): Regs {
    const b = Buffer.alloc(SIZEOF.kvm_regs);
    this.call('KVM_GET_REGS', K.KVM_GET_REGS, b);
    const regs = {} as Regs;
    REG_NAMES.forEach((name, i) => { regs[name] = b.readBigUInt64LE(i * 8); });
    return regs;
  }

  setRegs(regs: Regs): void {
    const b = Buffer.alloc(SIZEOF.kvm_regs);
    REG_NAMES.forEach((name, i) => b.writeBigUInt64LE(BigInt.asUintN(64, regs[name]), i * 8));
    this.call('KVM_SET_REGS', K.KVM_SET_REGS, b);
  }

  getSregs(): Sregs {
    const b = Buffer.alloc(SIZEOF.kvm_sregs);
    this.call('KVM_GET_SREGS', K.KVM_GET_SREGS, b);
    return decodeSregs(b);
  }

  setSregs(sregs: Sregs): void {
    // Read first so the interrupt bitmap and anything we do not model are preserved.
    const b = Buffer.alloc(SIZEOF.kvm_sregs);
    this.call('KVM_GET_SREGS', K.KVM_GET_SREGS, b);
    encodeSregs(sregs, b);
    this.call('KVM_SET_SREGS', K.KVM_SET_SREGS, b);
  }

  setCpuid(entries: readonly CpuidEntry[]): void {
    this.call('KVM_SET_CPUID2', K.KVM_SET_CPUID2, encodeCpuidEntries(entries));
  }

  setMsrs(msrs: ReadonlyArray<{ index: number; value: bigint }>): void {
    const b = Buffer.alloc(SIZEOF.kvm_msrs + msrs.length * SIZEOF.kvm_msr_entry);
    b.writeUInt32LE(msrs.length, 0);
    msrs.forEach((m, i) => {
      const o = SIZEOF.kvm_msrs + i * SIZEOF.kvm_msr_entry;
      b.writeUInt32LE(m.index >>> 0, o);
      b.writeBigUInt64LE(m.value, o + 8);
    });
    const set = libc.ioctlPtr(this.fd, K.KVM_SET_MSRS, b);
    if (set < 0) throw ioctlError('KVM_SET_MSRS', libc.lastErrno());
    if (set !== msrs.length) throw ioctlError(`KVM_SET_MSRS (MSR 0x${msrs[set]?.index.toString(16)} refused)`, 22);
  }

  /** Sets FPU control word and MXCSR to their reset values (x87 FCW 0x37f, MXCSR 0x1f80). */
  resetFpu(): void {
    const b = Buffer.alloc(SIZEOF.kvm_fpu);
    b.writeUInt16LE(0x37f, FPU.fcw);
    b.writeUInt32LE(0x1f80, FPU.mxcsr);
    this.call('KVM_SET_FPU', K.KVM_SET_FPU, b);
  }

  getVcpuEventsRaw(): Buffer {
    const b = Buffer.alloc(SIZEOF.kvm_vcpu_events);
    this.call('KVM_GET_VCPU_EVENTS', K.KVM_GET_VCPU_EVENTS, b);
    return b;
  }

  /** Queues an exception (e.g. #BP after completing an int3 the host could not emulate). */
  injectException(vector: number, errorCode?: number): void {
    const b = this.getVcpuEventsRaw();
    b.writeUInt8(1, VCPU_EVENTS.exception); // injected
    b.writeUInt8(vector, VCPU_EVENTS.exception + 1);
    b.writeUInt8(errorCode === undefined ? 0 : 1, VCPU_EVENTS.exception + 2);
    b.writeUInt32LE(errorCode ?? 0, VCPU_EVENTS.exception + 4);
    b.writeUInt32LE(0, VCPU_EVENTS.flags); // only the exception is valid
    this.call('KVM_SET_VCPU_EVENTS', K.KVM_SET_VCPU_EVENTS, b);
  }

  getMpState(): number {
    const b = Buffer.alloc(4);
    this.call('KVM_GET_MP_STATE', K.KVM_GET_MP_STATE, b);
    return b.readUInt32LE(0);
  }

  close(): void {
    libc.close(this.fd);
  }
}

function decodeSegment(b: Buffer, o: number): Segment {
  return {
    base: b.readBigUInt64LE(o + SEGMENT.base), limit: b.readUInt32LE(o + SEGMENT.limit), selector: b.readUInt16LE(o + SEGMENT.selector),
    type: b[o + SEGMENT.type]!, present: b[o + SEGMENT.present]!, dpl: b[o + SEGMENT.dpl]!, db: b[o + SEGMENT.db]!, s: b[o + SEGMENT.s]!,
    l: b[o + SEGMENT.l]!, g: b[o + SEGMENT.g]!, avl: b[o + SEGMENT.avl]!, unusable: b[o + SEGMENT.unusable]!,
  };
}

function encodeSegment(s: Segment, b: Buffer, o: number): void {
  b.writeBigUInt64LE(BigInt.asUintN(64, s.base), o + SEGMENT.base);
  b.writeUInt32LE(s.limit >>> 0, o + SEGMENT.limit);
  b.writeUInt16LE(s.selector, o + SEGMENT.selector);
  b[o + SEGMENT.type] = s.type;
  b[o + SEGMENT.present] = s.present;
  b[o + SEGMENT.dpl] = s.dpl;
  b[o + SEGMENT.db] = s.db;
  b[o + SEGMENT.s] = s.s;
  b[o + SEGMENT.l] = s.l;
  b[o + SEGMENT.g] = s.g;
  b[o + SEGMENT.avl] = s.avl;
  b[o + SEGMENT.unusable] = s.unusable;
}

export function decodeSregs(b: Buffer): Sregs {
  const seg = (name: (typeof SEGMENT_NAMES)[number]): Segment => decodeSegment(b, SREGS[name]);
  return {
    cs: seg('cs'), ds: seg('ds'), es: seg('es'), fs: seg('fs'), gs: seg('gs'), ss: seg('ss'), tr: seg('tr'), ldt: seg('ldt'),
    gdt: { base: b.readBigUInt64LE(SREGS.gdt), limit: b.readUInt16LE(SREGS.gdt + 8) },
    idt: { base: b.readBigUInt64LE(SREGS.idt), limit: b.readUInt16LE(SREGS.idt + 8) },
    cr0: b.readBigUInt64LE(SREGS.cr0), cr2: b.readBigUInt64LE(SREGS.cr2), cr3: b.readBigUInt64LE(SREGS.cr3),
    cr4: b.readBigUInt64LE(SREGS.cr4), cr8: b.readBigUInt64LE(SREGS.cr8), efer: b.readBigUInt64LE(SREGS.efer),
    apicBase: b.readBigUInt64LE(SREGS.apic_base),
  };
}

export function encodeSregs(s: Sregs, b: Buffer): void {
  for (const name of SEGMENT_NAMES) encodeSegment(s[name], b, SREGS[name]);
  b.writeBigUInt64LE(s.gdt.base, SREGS.gdt);
  b.writeUInt16LE(s.gdt.limit, SREGS.gdt + 8);
  b.writeBigUInt64LE(s.idt.base, SREGS.idt);
  b.writeUInt16LE(s.idt.limit, SREGS.idt + 8);
  b.writeBigUInt64LE(s.cr0, SREGS.cr0);
  b.writeBigUInt64LE(s.cr2, SREGS.cr2);
  b.writeBigUInt64LE(s.cr3, SREGS.cr3);
  b.writeBigUInt64LE(s.cr4, SREGS.cr4);
  b.writeBigUInt64LE(s.cr8, SREGS.cr8);
  b.writeBigUInt64LE(s.efer, SREGS.efer);
  b.writeBigUInt64LE(s.apicBase, SREGS.apic_base);
}
