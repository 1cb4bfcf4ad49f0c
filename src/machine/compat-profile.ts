// The compatibility profile for nested PVM hosts (HOST-NOTES): their KVM emulates guest kernel
// mode instruction by instruction, with gaps. Clearing CPUID bits is not always honoured
// there, so the profile also asks the Linux kernel itself to stay away from what the emulator
// lacks (XSAVE family, SMAP/SMEP's clac/stac, popcnt, cmpxchg16b, AVX) and from PV features
// that loop in kvm_hypercall on such hosts.
import type { CpuidEntry } from '../kvm/system.js';

export interface CompatProfile {
  readonly name: 'default' | 'pvm';
  /** Appended to a Linux guest's command line. */
  readonly linuxCmdline: string;
  /** CPUID feature bits to clear: [leaf, subleaf, register, bit]. */
  readonly clearCpuid: ReadonlyArray<readonly [number, number, 'eax' | 'ebx' | 'ecx' | 'edx', number]>;
}

export const DEFAULT_PROFILE: CompatProfile = { name: 'default', linuxCmdline: '', clearCpuid: [] };

export const PVM_PROFILE: CompatProfile = {
  name: 'pvm',
  linuxCmdline: 'noxsave nopv no-kvmclock clearcpuid=smap,smep,popcnt,cx16,xsave,avx,avx2,avx512f,fma,movbe,rdrand,rdseed,pcid,invpcid',
  clearCpuid: [
    [1, 0, 'ecx', 13], // CX16
    [1, 0, 'ecx', 22], // MOVBE
    [1, 0, 'ecx', 23], // POPCNT
    [1, 0, 'ecx', 26], // XSAVE
    [1, 0, 'ecx', 27], // OSXSAVE
    [1, 0, 'ecx', 28], // AVX
    [1, 0, 'ecx', 12], // FMA
    [1, 0, 'ecx', 30], // RDRAND
    [1, 0, 'ecx', 17], // PCID
    [7, 0, 'ebx', 7], // SMEP
    [7, 0, 'ebx', 20], // SMAP
    [7, 0, 'ebx', 5], // AVX2
    [7, 0, 'ebx', 16], // AVX512F
    [7, 0, 'ebx', 18], // RDSEED
    [7, 0, 'ebx', 10], // INVPCID
  ],
};

export function applyCpuidProfile(entries: CpuidEntry[], profile: CompatProfile): CpuidEntry[] {
  if (profile.clearCpuid.length === 0) return entries;
  return entries.map((e) => {
    let copy = e;
    for (const [leaf, subleaf, reg, bit] of profile.clearCpuid) {
      if (e.function === leaf && e.index === subleaf) copy = { ...copy, [reg]: (copy[reg] & ~(1 << bit)) >>> 0 };
    }
    return copy;
  });
}
