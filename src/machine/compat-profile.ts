// The compatibility profile for nested PVM hosts (HOST-NOTES): their KVM emulates guest kernel
// mode instruction by instruction, with gaps. The CPUID side lives in the platform's policy
// ('pvm-compat'); clearing CPUID bits is not always honoured there, so the profile also asks a
// Linux guest itself to stay away from what the emulator lacks and from the PV features that
// loop in kvm_hypercall on such hosts.
import { PVM_COMPAT_KERNEL_ARGS, type CpuidProfile } from '../platform/cpuid.js';

export interface CompatProfile {
  readonly name: 'default' | 'pvm';
  readonly cpuid: CpuidProfile;
  /** Appended to a Linux guest's command line. */
  readonly linuxCmdline: string;
}

export const DEFAULT_PROFILE: CompatProfile = { name: 'default', cpuid: 'default', linuxCmdline: '' };

// Beyond the policy's own list: AVX and friends (xrstor-dependent), and kvmclock, whose
// MSR-based setup the PVM emulator handles poorly (see docs/linux-on-pvm.md).
export const PVM_PROFILE: CompatProfile = {
  name: 'pvm',
  cpuid: 'pvm-compat',
  linuxCmdline: `${PVM_COMPAT_KERNEL_ARGS} no-kvmclock`,
};
