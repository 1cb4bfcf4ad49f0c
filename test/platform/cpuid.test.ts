// CPUID policy over a KVM_GET_SUPPORTED_CPUID list recorded on this project's (AMD, PVM) host,
// plus a synthetic Intel cache leaf.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { cpuidForVcpu, CpuidPolicyError, findCpuidEntry, hasCpuFeature, type CpuidEntry } from '../../src/platform/index.js';

// Compiled tests live in dist/test/platform; the fixture stays in the source tree.
const fixture = fileURLToPath(new URL('../../../test/platform/fixtures/kvm-supported-cpuid-amd.json', import.meta.url));
const host: CpuidEntry[] = JSON.parse(readFileSync(fixture, 'utf8'));

const leaf = (entries: readonly CpuidEntry[], fn: number, sub = 0): CpuidEntry => {
  const e = findCpuidEntry(entries, fn, sub);
  assert.ok(e, `leaf 0x${fn.toString(16)}.${sub}`);
  return e;
};

test('the fixture is a real supported-CPUID list', () => {
  assert.ok(host.length > 20);
  assert.equal(Buffer.from(new Uint32Array([leaf(host, 0).ebx, leaf(host, 0).edx, leaf(host, 0).ecx]).buffer).toString('latin1'), 'AuthenticAMD');
});

test('APIC ids, logical processor counts and x2APIC topology per vCPU', () => {
  for (const count of [1, 2, 8, 64]) {
    for (const index of [0, count - 1]) {
      const e = cpuidForVcpu(host, { vcpuIndex: index, vcpuCount: count, apicId: index });
      const l1 = leaf(e, 1);
      assert.equal(l1.ebx >>> 24, index, 'initial APIC id');
      assert.equal((l1.ebx >>> 16) & 0xff, count, 'logical processors');
      assert.equal((l1.ebx >>> 8) & 0xff, (leaf(host, 1).ebx >>> 8) & 0xff, 'CLFLUSH size kept');
      assert.equal(hasCpuFeature(e, 'htt'), count > 1);
      assert.equal(hasCpuFeature(e, 'hypervisor'), true);
      assert.equal(leaf(e, 0xb, 0).edx, index, 'x2APIC id at SMT level');
      assert.equal(leaf(e, 0xb, 0).ebx, 1);
      assert.equal((leaf(e, 0xb, 0).ecx >> 8) & 0xff, 1, 'level type SMT');
      assert.equal(leaf(e, 0xb, 1).ebx, count, 'processors at core level');
      assert.equal((leaf(e, 0xb, 1).ecx >> 8) & 0xff, 2, 'level type core');
      assert.ok(1 << leaf(e, 0xb, 1).eax >= count, 'shift covers every APIC id');
      assert.equal((leaf(e, 0xb, 2).ecx >> 8) & 0xff, 0, 'no level beyond core');
      assert.equal((leaf(e, 0x8000_0008).ecx & 0xff) + 1, count, 'AMD core count');
      assert.equal(leaf(e, 0x8000_001e).eax, index, 'AMD extended APIC id');
    }
  }
});

test('KVM signature kept; PV features hidden on request and in pvm-compat', () => {
  const def = cpuidForVcpu(host, { vcpuIndex: 0, vcpuCount: 1, apicId: 0 });
  const sig = leaf(def, 0x4000_0000);
  assert.equal(Buffer.from(new Uint32Array([sig.ebx, sig.ecx, sig.edx]).buffer).toString('latin1'), 'KVMKVMKVM\0\0\0');
  assert.equal(leaf(def, 0x4000_0001).eax, leaf(host, 0x4000_0001).eax, 'host PV features by default');
  assert.notEqual(leaf(host, 0x4000_0001).eax, 0, 'this host offers PV features');
  const hidden = cpuidForVcpu(host, { vcpuIndex: 0, vcpuCount: 1, apicId: 0 }, { pvFeatures: 'none' });
  assert.equal(leaf(hidden, 0x4000_0001).eax, 0);
  const masked = cpuidForVcpu(host, { vcpuIndex: 0, vcpuCount: 1, apicId: 0 }, { pvFeatures: 1 << 3 });
  assert.equal(leaf(masked, 0x4000_0001).eax, leaf(host, 0x4000_0001).eax & (1 << 3));
  const pvm = cpuidForVcpu(host, { vcpuIndex: 0, vcpuCount: 1, apicId: 0 }, { profile: 'pvm-compat' });
  assert.equal(leaf(pvm, 0x4000_0001).eax, 0);
});

/** The PVM host already withholds XSAVE, POPCNT, SMAP...: a VMX/SVM host would offer them. */
function richHost(): CpuidEntry[] {
  return host.map((e) => {
    if (e.function === 1) return { ...e, ecx: (e.ecx | (1 << 26) | (1 << 23) | (1 << 28) | (1 << 12)) >>> 0 };
    if (e.function === 7 && e.index === 0) return { ...e, ebx: (e.ebx | (1 << 20) | (1 << 7) | (1 << 5)) >>> 0 };
    if (e.function === 0xd) return { ...e, eax: e.eax | 7, ebx: 0x340 };
    return e;
  });
}

test('pvm-compat clears xsave (and AVX, leaf 0xD), smap, smep, popcnt, cx16', () => {
  assert.equal(hasCpuFeature(host, 'xsave'), false, 'this PVM host already withholds XSAVE');
  const rich = richHost();
  assert.ok(hasCpuFeature(rich, 'xsave') && hasCpuFeature(rich, 'popcnt') && hasCpuFeature(rich, 'avx') && hasCpuFeature(rich, 'smap'));
  const e = cpuidForVcpu(rich, { vcpuIndex: 0, vcpuCount: 2, apicId: 0 }, { profile: 'pvm-compat' });
  for (const name of ['xsave', 'avx', 'avx2', 'fma', 'smap', 'smep', 'popcnt', 'cx16', 'xsaveopt'] as const) assert.equal(hasCpuFeature(e, name), false, name);
  for (const entry of e.filter((x) => x.function === 0xd)) assert.deepEqual([entry.eax, entry.ebx, entry.ecx, entry.edx], [0, 0, 0, 0]);
  const def = cpuidForVcpu(rich, { vcpuIndex: 0, vcpuCount: 2, apicId: 0 });
  assert.equal(hasCpuFeature(def, 'xsave'), true, 'default keeps xsave');
  assert.equal(hasCpuFeature(def, 'popcnt'), true);
  assert.equal(hasCpuFeature(def, 'smap'), true);
});

test('leaf 6 and 0xA are zeroed unless perfmon is wanted; extra features can be cleared', () => {
  const e = cpuidForVcpu(host, { vcpuIndex: 0, vcpuCount: 1, apicId: 0 }, { clear: ['rdrand', 'x2apic'] });
  const six = leaf(e, 6);
  assert.deepEqual([six.eax, six.ebx, six.ecx, six.edx], [0, 0, 0, 0]);
  assert.equal(hasCpuFeature(e, 'rdrand'), false);
  assert.equal(hasCpuFeature(e, 'x2apic'), false);
  const synthetic: CpuidEntry[] = [...host.filter((x) => x.function !== 0xa), { function: 0xa, index: 0, flags: 0, eax: 0x07300805, ebx: 0, ecx: 0, edx: 0x603 }];
  assert.equal(leaf(cpuidForVcpu(synthetic, { vcpuIndex: 0, vcpuCount: 1, apicId: 0 }), 0xa).eax, 0);
  assert.equal(leaf(cpuidForVcpu(synthetic, { vcpuIndex: 0, vcpuCount: 1, apicId: 0 }, { perfmon: true }), 0xa).eax, 0x07300805);
});

test('Intel leaf 4: cores per package and L3 sharing', () => {
  const intel: CpuidEntry[] = [
    ...host.filter((x) => x.function !== 4),
    { function: 4, index: 0, flags: 1, eax: 0x1c004121, ebx: 0x01c0003f, ecx: 0x3f, edx: 0 }, // L1d
    { function: 4, index: 1, flags: 1, eax: 0x1c004143, ebx: 0x03c0003f, ecx: 0x3ff, edx: 0 }, // L2
    { function: 4, index: 2, flags: 1, eax: 0x1c03c163, ebx: 0x02c0003f, ecx: 0x3fff, edx: 6 }, // L3
    { function: 4, index: 3, flags: 1, eax: 0, ebx: 0, ecx: 0, edx: 0 },
  ];
  const e = cpuidForVcpu(intel, { vcpuIndex: 3, vcpuCount: 8, apicId: 3 });
  assert.equal((leaf(e, 4, 0).eax >>> 26) + 1, 8);
  assert.equal(((leaf(e, 4, 0).eax >>> 14) & 0xfff) + 1, 1, 'L1 per core');
  assert.equal(((leaf(e, 4, 2).eax >>> 14) & 0xfff) + 1, 8, 'L3 shared by all');
  assert.equal(leaf(e, 4, 2).eax & 0x3fff, 0x0163 & 0x3fff, 'cache type/level bits kept');
  assert.equal(leaf(e, 4, 3).eax, 0, 'terminating sub-leaf untouched');
});

test('the policy does not modify its input and refuses bad topologies', () => {
  const before = JSON.stringify(host);
  cpuidForVcpu(host, { vcpuIndex: 1, vcpuCount: 4, apicId: 1 }, { profile: 'pvm-compat' });
  assert.equal(JSON.stringify(host), before);
  assert.throws(() => cpuidForVcpu(host, { vcpuIndex: 4, vcpuCount: 4, apicId: 4 }), CpuidPolicyError);
  assert.throws(() => cpuidForVcpu(host, { vcpuIndex: 0, vcpuCount: 0, apicId: 0 }), CpuidPolicyError);
  assert.throws(() => cpuidForVcpu([], { vcpuIndex: 0, vcpuCount: 1, apicId: 0 }), CpuidPolicyError);
  assert.throws(() => cpuidForVcpu(host, { vcpuIndex: 0, vcpuCount: 1, apicId: 0 }, { clear: ['nonsense' as never] }), CpuidPolicyError);
});
