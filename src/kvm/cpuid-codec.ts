// struct kvm_cpuid2 / kvm_cpuid_entry2 to and from plain objects (shared by the system and
// vCPU handles; kept apart so neither module imports the other).
import { SIZEOF } from './layouts.js';

/** One entry of struct kvm_cpuid_entry2. `function` is the leaf, `index` the sub-leaf. */
export interface CpuidEntry {
  function: number;
  index: number;
  /** KVM_CPUID_FLAG_SIGNIFCANT_INDEX (1): `index` matters. */
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

export function decodeCpuidEntries(buffer: Buffer): CpuidEntry[] {
  const count = buffer.readUInt32LE(0);
  const entries: CpuidEntry[] = [];
  for (let i = 0; i < count; i++) {
    const o = SIZEOF.kvm_cpuid2 + i * SIZEOF.kvm_cpuid_entry2;
    entries.push({
      function: buffer.readUInt32LE(o), index: buffer.readUInt32LE(o + 4), flags: buffer.readUInt32LE(o + 8),
      eax: buffer.readUInt32LE(o + 12), ebx: buffer.readUInt32LE(o + 16), ecx: buffer.readUInt32LE(o + 20), edx: buffer.readUInt32LE(o + 24),
    });
  }
  return entries;
}

export function encodeCpuidEntries(entries: readonly CpuidEntry[]): Buffer {
  const buffer = Buffer.alloc(SIZEOF.kvm_cpuid2 + entries.length * SIZEOF.kvm_cpuid_entry2);
  buffer.writeUInt32LE(entries.length, 0);
  entries.forEach((e, i) => {
    const o = SIZEOF.kvm_cpuid2 + i * SIZEOF.kvm_cpuid_entry2;
    buffer.writeUInt32LE(e.function >>> 0, o);
    buffer.writeUInt32LE(e.index >>> 0, o + 4);
    buffer.writeUInt32LE(e.flags >>> 0, o + 8);
    buffer.writeUInt32LE(e.eax >>> 0, o + 12);
    buffer.writeUInt32LE(e.ebx >>> 0, o + 16);
    buffer.writeUInt32LE(e.ecx >>> 0, o + 20);
    buffer.writeUInt32LE(e.edx >>> 0, o + 24);
  });
  return buffer;
}
