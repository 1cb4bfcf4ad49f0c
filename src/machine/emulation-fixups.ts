// Completing instructions the host's KVM could not emulate. On nested PVM hosts guest kernel
// mode is emulated by KVM's instruction emulator, which lacks some instructions (HOST-NOTES).
// KVM_EXIT_INTERNAL_ERROR / EMULATION carries the instruction bytes; those whose effect is
// simple are completed here by editing registers. Anything else is reported, not guessed.
import type { KvmVcpu } from '../kvm/vcpu.js';
import type { GuestMemory } from '../memory/guest-memory.js';

export type Fixup = 'fwait' | 'clac' | 'stac' | 'int3' | 'iret32';

const RFLAGS_AC = 1n << 18n;

/** Classifies the instruction at the start of `bytes` (legacy prefixes are not accepted). */
export function classify(bytes: Uint8Array): Fixup | undefined {
  if (bytes[0] === 0x9b) return 'fwait';
  if (bytes[0] === 0xcc) return 'int3';
  if (bytes[0] === 0xcf) return 'iret32';
  if (bytes[0] === 0x0f && bytes[1] === 0x01 && bytes[2] === 0xca) return 'clac';
  if (bytes[0] === 0x0f && bytes[1] === 0x01 && bytes[2] === 0xcb) return 'stac';
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
