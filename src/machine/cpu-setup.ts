// Puts a vCPU in the state a boot loader asked for (plain data from src/boot).
import type { CpuStartState, SegmentState } from '../boot/boot-plan.js';
import type { KvmVcpu, Regs, Segment } from '../kvm/vcpu.js';

function segment(s: SegmentState): Segment {
  return {
    base: BigInt(s.base), limit: s.limit, selector: s.selector, type: s.type, present: s.present ? 1 : 0, dpl: s.dpl,
    db: s.db ? 1 : 0, s: s.s ? 1 : 0, l: s.l ? 1 : 0, g: s.g ? 1 : 0, avl: 0, unusable: 0,
  };
}

export function applyStartState(vcpu: KvmVcpu, state: CpuStartState): void {
  const sregs = vcpu.getSregs();
  sregs.cs = segment(state.cs);
  sregs.ds = segment(state.ds);
  sregs.es = segment(state.es);
  sregs.fs = segment(state.fs);
  sregs.gs = segment(state.gs);
  sregs.ss = segment(state.ss);
  sregs.tr = segment(state.tr);
  sregs.ldt = segment(state.ldt);
  sregs.gdt = { base: BigInt(state.gdt.base), limit: state.gdt.limit };
  sregs.idt = { base: BigInt(state.idt.base), limit: state.idt.limit };
  sregs.cr0 = BigInt(state.cr0);
  sregs.cr3 = BigInt(state.cr3);
  sregs.cr4 = BigInt(state.cr4);
  sregs.efer = BigInt(state.efer);
  vcpu.setSregs(sregs);
  const regs = vcpu.getRegs();
  for (const key of Object.keys(regs) as Array<keyof Regs>) regs[key] = 0n;
  regs.rip = BigInt(state.rip);
  regs.rsp = BigInt(state.rsp);
  regs.rflags = BigInt(state.rflags | 2);
  for (const [name, value] of Object.entries(state.gpr)) {
    if (value !== undefined) regs[name as keyof Regs] = BigInt(value);
  }
  vcpu.setRegs(regs);
  vcpu.resetFpu();
}
