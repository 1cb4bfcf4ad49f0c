// Completing instructions the host's KVM could not emulate. On nested PVM hosts guest kernel
// mode is emulated by KVM's instruction emulator, which lacks some instructions (HOST-NOTES).
// KVM_EXIT_INTERNAL_ERROR / EMULATION carries the instruction bytes; those whose effect is
// simple are completed here by editing registers. Anything else is reported, not guessed.
import type { KvmVcpu } from '../kvm/vcpu.js';

export type Fixup = 'fwait' | 'clac' | 'stac' | 'int3';

const RFLAGS_AC = 1n << 18n;

/** Classifies the instruction at the start of `bytes` (legacy prefixes are not accepted). */
export function classify(bytes: Uint8Array): Fixup | undefined {
  if (bytes[0] === 0x9b) return 'fwait';
  if (bytes[0] === 0xcc) return 'int3';
  if (bytes[0] === 0x0f && bytes[1] === 0x01 && bytes[2] === 0xca) return 'clac';
  if (bytes[0] === 0x0f && bytes[1] === 0x01 && bytes[2] === 0xcb) return 'stac';
  return undefined;
}

/** Applies a fixup; returns false if the instruction is not one novm completes. */
export function completeInstruction(vcpu: KvmVcpu, bytes: Uint8Array): Fixup | undefined {
  const fixup = classify(bytes);
  if (fixup === undefined) return undefined;
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
  }
  vcpu.setRegs(regs);
  if (fixup === 'int3') vcpu.injectException(3);
  return fixup;
}
