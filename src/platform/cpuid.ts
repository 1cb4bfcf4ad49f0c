// CPUID policy: from what the host's KVM supports (KVM_GET_SUPPORTED_CPUID) to what one vCPU
// is given (KVM_SET_CPUID2). A pure function: no ioctls, no /proc/cpuinfo.
// Leaf layouts: Intel SDM vol. 2A, "CPUID"; AMD APM vol. 3, appendix E; KVM's paravirtual
// leaves: Linux Documentation/virt/kvm/x86/cpuid.rst.

/** One entry of struct kvm_cpuid_entry2 (`function` is the leaf, `index` the sub-leaf). */
import type { CpuidEntry } from '../kvm/system.js';
export type { CpuidEntry };

export const KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1;

export interface CpuTopology {
  readonly vcpuIndex: number;
  readonly vcpuCount: number;
  /** Initial (x2)APIC id of this vCPU; novm uses the vCPU index. */
  readonly apicId: number;
}

type Register = 'eax' | 'ebx' | 'ecx' | 'edx';

interface FeatureBit {
  readonly leaf: number;
  readonly subleaf: number;
  readonly register: Register;
  readonly bit: number;
}

/** Features a profile or caller may clear, by their Linux /proc/cpuinfo names. */
export const CPU_FEATURES = {
  monitor: { leaf: 1, subleaf: 0, register: 'ecx', bit: 3 },
  vmx: { leaf: 1, subleaf: 0, register: 'ecx', bit: 5 },
  fma: { leaf: 1, subleaf: 0, register: 'ecx', bit: 12 },
  cx16: { leaf: 1, subleaf: 0, register: 'ecx', bit: 13 },
  pdcm: { leaf: 1, subleaf: 0, register: 'ecx', bit: 15 },
  pcid: { leaf: 1, subleaf: 0, register: 'ecx', bit: 17 },
  x2apic: { leaf: 1, subleaf: 0, register: 'ecx', bit: 21 },
  movbe: { leaf: 1, subleaf: 0, register: 'ecx', bit: 22 },
  popcnt: { leaf: 1, subleaf: 0, register: 'ecx', bit: 23 },
  tsc_deadline_timer: { leaf: 1, subleaf: 0, register: 'ecx', bit: 24 },
  aes: { leaf: 1, subleaf: 0, register: 'ecx', bit: 25 },
  xsave: { leaf: 1, subleaf: 0, register: 'ecx', bit: 26 },
  osxsave: { leaf: 1, subleaf: 0, register: 'ecx', bit: 27 },
  avx: { leaf: 1, subleaf: 0, register: 'ecx', bit: 28 },
  f16c: { leaf: 1, subleaf: 0, register: 'ecx', bit: 29 },
  rdrand: { leaf: 1, subleaf: 0, register: 'ecx', bit: 30 },
  hypervisor: { leaf: 1, subleaf: 0, register: 'ecx', bit: 31 },
  htt: { leaf: 1, subleaf: 0, register: 'edx', bit: 28 },
  fsgsbase: { leaf: 7, subleaf: 0, register: 'ebx', bit: 0 },
  bmi1: { leaf: 7, subleaf: 0, register: 'ebx', bit: 3 },
  hle: { leaf: 7, subleaf: 0, register: 'ebx', bit: 4 },
  avx2: { leaf: 7, subleaf: 0, register: 'ebx', bit: 5 },
  smep: { leaf: 7, subleaf: 0, register: 'ebx', bit: 7 },
  bmi2: { leaf: 7, subleaf: 0, register: 'ebx', bit: 8 },
  invpcid: { leaf: 7, subleaf: 0, register: 'ebx', bit: 10 },
  rtm: { leaf: 7, subleaf: 0, register: 'ebx', bit: 11 },
  avx512f: { leaf: 7, subleaf: 0, register: 'ebx', bit: 16 },
  avx512dq: { leaf: 7, subleaf: 0, register: 'ebx', bit: 17 },
  rdseed: { leaf: 7, subleaf: 0, register: 'ebx', bit: 18 },
  adx: { leaf: 7, subleaf: 0, register: 'ebx', bit: 19 },
  smap: { leaf: 7, subleaf: 0, register: 'ebx', bit: 20 },
  avx512ifma: { leaf: 7, subleaf: 0, register: 'ebx', bit: 21 },
  avx512cd: { leaf: 7, subleaf: 0, register: 'ebx', bit: 28 },
  avx512bw: { leaf: 7, subleaf: 0, register: 'ebx', bit: 30 },
  avx512vl: { leaf: 7, subleaf: 0, register: 'ebx', bit: 31 },
  avx512vbmi: { leaf: 7, subleaf: 0, register: 'ecx', bit: 1 },
  umip: { leaf: 7, subleaf: 0, register: 'ecx', bit: 2 },
  pku: { leaf: 7, subleaf: 0, register: 'ecx', bit: 3 },
  ospke: { leaf: 7, subleaf: 0, register: 'ecx', bit: 4 },
  avx512_vbmi2: { leaf: 7, subleaf: 0, register: 'ecx', bit: 6 },
  vaes: { leaf: 7, subleaf: 0, register: 'ecx', bit: 9 },
  vpclmulqdq: { leaf: 7, subleaf: 0, register: 'ecx', bit: 10 },
  avx512_vnni: { leaf: 7, subleaf: 0, register: 'ecx', bit: 11 },
  avx512_bitalg: { leaf: 7, subleaf: 0, register: 'ecx', bit: 12 },
  avx512_vpopcntdq: { leaf: 7, subleaf: 0, register: 'ecx', bit: 14 },
  la57: { leaf: 7, subleaf: 0, register: 'ecx', bit: 16 },
  avx512_fp16: { leaf: 7, subleaf: 0, register: 'edx', bit: 23 },
  xsaveopt: { leaf: 0xd, subleaf: 1, register: 'eax', bit: 0 },
  xsavec: { leaf: 0xd, subleaf: 1, register: 'eax', bit: 1 },
  xsaves: { leaf: 0xd, subleaf: 1, register: 'eax', bit: 3 },
  svm: { leaf: 0x8000_0001, subleaf: 0, register: 'ecx', bit: 2 },
  abm: { leaf: 0x8000_0001, subleaf: 0, register: 'ecx', bit: 5 },
  rdtscp: { leaf: 0x8000_0001, subleaf: 0, register: 'edx', bit: 27 },
} as const satisfies Record<string, FeatureBit>;

export type CpuFeatureName = keyof typeof CPU_FEATURES;

/**
 * Clearing a feature also clears what depends on it (an AVX without XSAVE would make a guest
 * execute XSAVE-managed state it cannot save).
 */
const DEPENDENTS: Partial<Record<CpuFeatureName, readonly CpuFeatureName[]>> = {
  xsave: ['osxsave', 'avx', 'fma', 'f16c', 'avx2', 'avx512f', 'xsaveopt', 'xsavec', 'xsaves', 'pku', 'ospke'],
  avx: ['fma', 'f16c', 'avx2', 'avx512f', 'vaes', 'vpclmulqdq'],
  avx512f: ['avx512dq', 'avx512ifma', 'avx512cd', 'avx512bw', 'avx512vl', 'avx512vbmi', 'avx512_vbmi2', 'avx512_vnni', 'avx512_bitalg', 'avx512_vpopcntdq', 'avx512_fp16'],
  pcid: ['invpcid'],
};

export type CpuidProfile = 'default' | 'pvm-compat';

/**
 * 'pvm-compat' clears what the nested PVM host's instruction emulator cannot run in guest
 * kernel mode (see shared/HOST-NOTES.md: xrstor, clac, popcnt, lock cmpxchg16b) and hides
 * KVM's paravirtual features (the guest looped in kvm_hypercall2 with them on).
 */
export const PROFILE_CLEARED: Record<CpuidProfile, readonly CpuFeatureName[]> = {
  default: ['vmx', 'svm', 'monitor', 'pdcm'],
  'pvm-compat': ['vmx', 'svm', 'monitor', 'pdcm', 'xsave', 'smap', 'smep', 'popcnt', 'cx16', 'pcid'],
};

/**
 * Kernel parameters matching the 'pvm-compat' profile: HOST-NOTES records that the PVM host
 * did not always honour cleared CPUID bits, so the machine should pass these as well.
 */
export const PVM_COMPAT_KERNEL_ARGS = 'noxsave nopv clearcpuid=smap,smep,popcnt,cx16,pcid';

export interface CpuidPolicyOptions {
  readonly profile?: CpuidProfile;
  /** More features to clear, by name. */
  readonly clear?: readonly CpuFeatureName[];
  /**
   * KVM paravirtual features in leaf 0x40000001 EAX: 'host' keeps what KVM offers, 'none'
   * hides them all (the KVM signature stays), or an explicit mask ANDed with KVM's.
   * Default: 'host', or 'none' for 'pvm-compat'.
   */
  readonly pvFeatures?: 'host' | 'none' | number;
  /** Keep the architectural performance monitoring leaf 0xA. Default false (zeroed). */
  readonly perfmon?: boolean;
}

export class CpuidPolicyError extends Error {
  readonly kind = 'cpuid-policy' as const;
  constructor(message: string) {
    super(message);
    this.name = 'CpuidPolicyError';
  }
}

const KVM_SIGNATURE = { ebx: 0x4b4d564b, ecx: 0x564b4d56, edx: 0x0000004d }; // "KVMKVMKVM\0\0\0"

interface MutableEntry {
  function: number;
  index: number;
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

/** Bits needed to number `count` items (ceil(log2(count))). */
function bitsFor(count: number): number {
  let bits = 0;
  while (1 << bits < count) bits++;
  return bits;
}

/**
 * The CPUID entries for one vCPU. Leaves are copied from `supported`; topology leaves are
 * rewritten for `vcpuCount` single-threaded cores in one package; features the VMM does not
 * support or the profile excludes are cleared.
 */
export function cpuidForVcpu(supported: readonly CpuidEntry[], topology: CpuTopology, options: CpuidPolicyOptions = {}): CpuidEntry[] {
  const { vcpuIndex, vcpuCount, apicId } = topology;
  if (!Number.isInteger(vcpuCount) || vcpuCount < 1 || vcpuCount > 255) throw new CpuidPolicyError(`vcpuCount must be 1..255, not ${vcpuCount}`);
  if (!Number.isInteger(vcpuIndex) || vcpuIndex < 0 || vcpuIndex >= vcpuCount) throw new CpuidPolicyError(`vcpuIndex ${vcpuIndex} is outside 0..${vcpuCount - 1}`);
  if (!Number.isInteger(apicId) || apicId < 0 || apicId > 0xfe) throw new CpuidPolicyError(`apicId must be 0..254, not ${apicId}`);
  if (!supported.some((e) => e.function === 0)) throw new CpuidPolicyError('the supported CPUID list has no leaf 0');
  const profile = options.profile ?? 'default';
  const entries: MutableEntry[] = supported.map((e) => ({ ...e }));
  const find = (leaf: number, subleaf = 0): MutableEntry | undefined =>
    entries.find((e) => e.function === leaf && (!(e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e.index === subleaf));

  // Feature clearing, with dependents.
  const toClear = new Set<CpuFeatureName>();
  const add = (name: CpuFeatureName): void => {
    if (toClear.has(name)) return;
    toClear.add(name);
    for (const dep of DEPENDENTS[name] ?? []) add(dep);
  };
  for (const name of [...PROFILE_CLEARED[profile], ...(options.clear ?? [])]) {
    if (!(name in CPU_FEATURES)) throw new CpuidPolicyError(`unknown CPU feature "${String(name)}"`);
    add(name);
  }
  for (const name of toClear) {
    const f: FeatureBit = CPU_FEATURES[name];
    const entry = find(f.leaf, f.subleaf);
    if (entry) entry[f.register] = (entry[f.register] & ~(1 << f.bit)) >>> 0;
  }
  if (toClear.has('xsave')) {
    // Without XSAVE the whole state-component leaf means nothing.
    for (const e of entries) if (e.function === 0xd) e.eax = e.ebx = e.ecx = e.edx = 0;
  }

  const multi = vcpuCount > 1;
  const leaf1 = find(1);
  if (leaf1) {
    // EBX: [31:24] initial APIC id, [23:16] logical processors per package, [15:8] CLFLUSH size.
    leaf1.ebx = ((apicId << 24) | ((multi ? vcpuCount : 1) << 16) | (leaf1.ebx & 0xffff)) >>> 0;
    leaf1.ecx = (leaf1.ecx | 1 << 31) >>> 0; // hypervisor present
    leaf1.edx = multi ? (leaf1.edx | 1 << 28) >>> 0 : (leaf1.edx & ~(1 << 28)) >>> 0; // HTT
  }

  // Leaf 4 (Intel deterministic cache parameters): EAX[31:26] cores per package - 1,
  // EAX[25:14] logical processors sharing the cache - 1 (1 for per-core L1/L2, all for L3).
  for (const e of entries) {
    if (e.function !== 4 || (e.eax & 0x1f) === 0) continue;
    const level = (e.eax >> 5) & 7;
    const sharing = level >= 3 ? vcpuCount - 1 : 0;
    e.eax = ((e.eax & 0x3fff) | (sharing << 14) | (Math.min(vcpuCount - 1, 63) << 26)) >>> 0;
  }

  // Leaves 0xB and 0x1F (x2APIC topology): SMT level of 1 thread, core level of vcpuCount.
  for (const leaf of [0xb, 0x1f]) {
    if (!entries.some((e) => e.function === leaf)) continue;
    for (let i = entries.length - 1; i >= 0; i--) if (entries[i]!.function === leaf) entries.splice(i, 1);
    const flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
    entries.push(
      { function: leaf, index: 0, flags, eax: 0, ebx: 1, ecx: (1 << 8) | 0, edx: apicId },
      { function: leaf, index: 1, flags, eax: bitsFor(vcpuCount), ebx: vcpuCount, ecx: (2 << 8) | 1, edx: apicId },
      { function: leaf, index: 2, flags, eax: 0, ebx: 0, ecx: 2, edx: apicId },
    );
  }

  // AMD: leaf 0x80000008 ECX [7:0] cores - 1, [15:12] APIC id bits for the core.
  const amdSize = find(0x8000_0008);
  if (amdSize) amdSize.ecx = ((amdSize.ecx & ~0xf0ff) | (bitsFor(vcpuCount) << 12) | (vcpuCount - 1)) >>> 0;

  // AMD: leaf 0x8000001E: EAX extended APIC id, EBX[7:0] core id and [15:8] threads per
  // core - 1, ECX node id and nodes per package - 1 (one node).
  const amdTopology = find(0x8000_001e);
  if (amdTopology) {
    amdTopology.eax = apicId;
    amdTopology.ebx = ((amdTopology.ebx & ~0xffff) | (vcpuIndex & 0xff)) >>> 0;
    amdTopology.ecx = (amdTopology.ecx & ~0x7ff) >>> 0;
  }

  // Leaf 6 (thermal and power management): novm emulates none of it.
  const leaf6 = find(6);
  if (leaf6) leaf6.eax = leaf6.ebx = leaf6.ecx = leaf6.edx = 0;
  // Leaf 0xA (architectural performance monitoring): off unless asked for.
  const leafA = find(0xa);
  if (leafA && !options.perfmon) leafA.eax = leafA.ebx = leafA.ecx = leafA.edx = 0;

  // KVM paravirtual leaves.
  const signature = find(0x4000_0000);
  if (signature) {
    signature.ebx = KVM_SIGNATURE.ebx;
    signature.ecx = KVM_SIGNATURE.ecx;
    signature.edx = KVM_SIGNATURE.edx;
    if (signature.eax < 0x4000_0001) signature.eax = 0x4000_0001;
  }
  const pv = find(0x4000_0001);
  const pvChoice = options.pvFeatures ?? (profile === 'pvm-compat' ? 'none' : 'host');
  if (pv) {
    if (pvChoice === 'none') pv.eax = pv.ebx = pv.ecx = pv.edx = 0;
    else if (typeof pvChoice === 'number') pv.eax = (pv.eax & pvChoice) >>> 0;
  }

  entries.sort((a, b) => a.function - b.function || a.index - b.index);
  return entries;
}

/** Looks up the entry a guest would see for CPUID(leaf, subleaf). */
export function findCpuidEntry(entries: readonly CpuidEntry[], leaf: number, subleaf = 0): CpuidEntry | undefined {
  return entries.find((e) => e.function === leaf && (!(e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e.index === subleaf));
}

/** Whether a named feature is set in `entries`. */
export function hasCpuFeature(entries: readonly CpuidEntry[], name: CpuFeatureName): boolean {
  const f: FeatureBit = CPU_FEATURES[name];
  const entry = findCpuidEntry(entries, f.leaf, f.subleaf);
  return entry !== undefined && ((entry[f.register] >>> f.bit) & 1) === 1;
}
