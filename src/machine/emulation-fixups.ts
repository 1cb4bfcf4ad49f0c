// Completing instructions the host's KVM could not emulate. On nested PVM hosts guest kernel
// mode is emulated by KVM's instruction emulator, which lacks some instructions (HOST-NOTES).
// KVM_EXIT_INTERNAL_ERROR / EMULATION carries the instruction bytes; those whose effect is
// simple are completed here by editing registers. Anything else is reported, not guessed.
import type { KvmVcpu } from '../kvm/vcpu.js';
import type { GuestMemory } from '../memory/guest-memory.js';

export type Fixup = 'fwait' | 'clac' | 'stac' | 'int3' | 'iret32' | 'popcnt';

const RFLAGS_AC = 1n << 18n;
const RFLAGS_TF = 1n << 8n;
// CF, PF, AF, ZF, SF, OF: POPCNT clears them all and then sets ZF when the source is zero
// (Intel SDM vol. 2B, POPCNT, "Flags Affected").
const RFLAGS_ARITH = 0x8d5n;
const RFLAGS_ZF = 1n << 6n;

/** General-purpose registers by their x86 encoding (ModRM reg/rm with REX.R/REX.B). */
const GPR_BY_ENCODING = ['rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'] as const;

interface PopcntRegReg {
  readonly length: number;
  readonly bits: 16 | 32 | 64;
  readonly dest: (typeof GPR_BY_ENCODING)[number];
  readonly source: (typeof GPR_BY_ENCODING)[number];
}

/**
 * Decodes `[66] F3 [REX] 0F B8 /r` with a register source (ModRM.mod = 3) as in 64-bit mode;
 * the memory forms are not completed (their address would need a full decoder).
 */
export function decodePopcntRegReg(bytes: Uint8Array): PopcntRegReg | undefined {
  let i = 0;
  let rep = false;
  let opsize = false;
  for (; i < 2; i++) {
    if (bytes[i] === 0xf3 && !rep) rep = true;
    else if (bytes[i] === 0x66 && !opsize) opsize = true;
    else break;
  }
  if (!rep) return undefined;
  let rex = 0;
  const maybeRex = bytes[i];
  if (maybeRex !== undefined && (maybeRex & 0xf0) === 0x40) {
    rex = maybeRex;
    i++;
  }
  if (bytes[i] !== 0x0f || bytes[i + 1] !== 0xb8) return undefined;
  const modrm = bytes[i + 2];
  if (modrm === undefined || (modrm >> 6) !== 3) return undefined;
  const dest = GPR_BY_ENCODING[((modrm >> 3) & 7) | ((rex & 4) << 1)]!;
  const source = GPR_BY_ENCODING[(modrm & 7) | ((rex & 1) << 3)]!;
  const bits = (rex & 8) !== 0 ? 64 : opsize ? 16 : 32;
  return { length: i + 3, bits, dest, source };
}

function popcount(value: bigint): bigint {
  let count = 0n;
  for (let v = value; v !== 0n; v &= v - 1n) count++;
  return count;
}

/** POPCNT reg, reg in 64-bit mode (seen on PVM hosts when the guest believes POPCNT exists). */
function completePopcnt(vcpu: KvmVcpu, bytes: Uint8Array): boolean {
  const insn = decodePopcntRegReg(bytes);
  if (insn === undefined || vcpu.getSregs().cs.l !== 1) return false;
  const regs = vcpu.getRegs();
  // A single-step trap would be due after the instruction: leave that case to the host.
  if ((regs.rflags & RFLAGS_TF) !== 0n) return false;
  const mask = (1n << BigInt(insn.bits)) - 1n;
  const source = regs[insn.source] & mask;
  const count = popcount(source);
  // 32-bit destinations are zero-extended; 16-bit ones keep bits 16-63 (SDM vol. 1, 3.4.1.1).
  regs[insn.dest] = insn.bits === 16 ? (regs[insn.dest] & ~0xffffn) | count : count;
  regs.rflags = (regs.rflags & ~RFLAGS_ARITH) | (source === 0n ? RFLAGS_ZF : 0n);
  regs.rip += BigInt(insn.length);
  vcpu.setRegs(regs);
  return true;
}

/** Classifies the instruction at the start of `bytes` (legacy prefixes only where listed). */
export function classify(bytes: Uint8Array): Fixup | undefined {
  if (bytes[0] === 0x9b) return 'fwait';
  if (bytes[0] === 0xcc) return 'int3';
  if (bytes[0] === 0xcf) return 'iret32';
  if (bytes[0] === 0x0f && bytes[1] === 0x01 && bytes[2] === 0xca) return 'clac';
  if (bytes[0] === 0x0f && bytes[1] === 0x01 && bytes[2] === 0xcb) return 'stac';
  if (decodePopcntRegReg(bytes) !== undefined) return 'popcnt';
  return undefined;
}

/**
 * IRET in 32-bit protected mode, returning to the same privilege level and code segment (the
 * only form completed here): pops EIP, CS, EFLAGS. Seen on PVM hosts, whose emulator lacks it.
 * Paging must be off (the stack address is then physical); anything else is left unhandled.
 */
function completeIret32(vcpu: KvmVcpu, memory: GuestMemory): boolean {
  const sregs = vcpu.getSregs();
  if (sregs.cs.l !== 0 || sregs.cs.db !== 1 || (sregs.cr0 & 0x80000000n) !== 0n || (sregs.cr0 & 1n) === 0n) return false;
  const regs = vcpu.getRegs();
  const esp = Number(sregs.ss.base + (regs.rsp & 0xffffffffn));
  if (!memory.isValidRange(esp, 12)) return false;
  const eip = memory.readU32LE(esp);
  const cs = memory.readU32LE(esp + 4) & 0xffff;
  const eflags = memory.readU32LE(esp + 8);
  if (cs !== sregs.cs.selector) return false;
  regs.rip = BigInt(eip);
  // Same privilege: IOPL/VM/VIF/VIP are not changed by a CPL-0 iret into CPL 0 except as
  // popped; keep the reserved bit 1 set.
  regs.rflags = BigInt((eflags & 0x003f7fd5) | 2);
  regs.rsp = (regs.rsp & ~0xffffffffn) | BigInt((Number(regs.rsp & 0xffffffffn) + 12) >>> 0);
  vcpu.setRegs(regs);
  return true;
}

/** Applies a fixup; returns undefined if the instruction is not one novm completes. */
export function completeInstruction(vcpu: KvmVcpu, bytes: Uint8Array, memory?: GuestMemory): Fixup | undefined {
  const fixup = classify(bytes);
  if (fixup === undefined) return undefined;
  if (fixup === 'iret32') return memory !== undefined && completeIret32(vcpu, memory) ? fixup : undefined;
  if (fixup === 'popcnt') return completePopcnt(vcpu, bytes) ? fixup : undefined;
  const regs = vcpu.getRegs();
  switch (fixup) {
    case 'fwait':
      // No pending x87 exceptions are modelled: fwait is a no-op.
      regs.rip += 1n;
      break;
    case 'clac':
      regs.rip += 3n;
      regs.rflags &= ~RFLAGS_AC;
      break;
    case 'stac':
      regs.rip += 3n;
      regs.rflags |= RFLAGS_AC;
      break;
    case 'int3':
      // A trap: RIP points after the instruction when #BP is delivered.
      regs.rip += 1n;
      break;
    default:
      return undefined;
  }
  vcpu.setRegs(regs);
  if (fixup === 'int3') vcpu.injectException(3);
  return fixup;
}
