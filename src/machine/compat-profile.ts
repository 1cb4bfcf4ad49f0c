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
// MSR-based setup the PVM emulator handles poorly (measured: see docs/kvm-on-pvm.md).
// acpi_skip_timer_override: the MADT says ISA IRQ0 -> GSI 2, but KVM's default GSI routing
// (novm sets none) delivers the in-kernel PIT on IOAPIC pin 0. Linux then finds no timer on
// pin 2 and falls back to ExtINT through the 8259A, a check that fails under load on slow
// emulated hosts ("IO-APIC + timer doesn't work!" panic, docs/linux-on-pvm.md). Ignoring the
// override puts the timer on pin 0, where it works. Remove this once GSI 0 is routed to pin 2.
export const PVM_PROFILE: CompatProfile = {
  name: 'pvm',
  cpuid: 'pvm-compat',
  linuxCmdline: `${PVM_COMPAT_KERNEL_ARGS} no-kvmclock acpi_skip_timer_override`,
};
