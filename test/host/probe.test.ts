// The user-space probe: its embedded image is exactly its source assembled; the probe guest is
// right on a correct CPU (QEMU's software CPU reports success); and on this host's KVM the
// answer agrees with what the host is (nested PVM: no; VMX/SVM: yes).
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { cpuFacts } from '../../src/host/host-facts.js';
import { USER_SYSCALL_PROBE_IMAGE } from '../../src/host/user-syscall-probe-image.js';
import { runUserSpaceProbe, userSpaceProbe } from '../../src/host/user-space-probe.js';
import { repoRoot } from '../guests/core/assemble.js';

function assembleProbe(): string {
  const dir = mkdtempSync(join(tmpdir(), 'novm-probe-'));
  execFileSync('as', ['--32', join(repoRoot(), 'src/host/user-syscall-probe.S'), '-o', join(dir, 'p.o')]);
  execFileSync('ld', ['-m', 'elf_i386', '-Ttext', '0x100000', '--oformat', 'binary', join(dir, 'p.o'), '-o', join(dir, 'p.bin')]);
  return join(dir, 'p.bin');
}

test('the embedded probe image is the assembled source', () => {
  assert.deepEqual(new Uint8Array(readFileSync(assembleProbe())), USER_SYSCALL_PROBE_IMAGE);
});

const qemu = existsSync('/usr/bin/qemu-system-x86_64') ? false : 'needs qemu-system-x86 (software CPU reference)';

test('on a software CPU (QEMU TCG) the probe guest reports that user space works', { skip: qemu }, () => {
  const image = assembleProbe();
  const r = spawnSync('qemu-system-x86_64', ['-accel', 'tcg', '-m', '64', '-kernel', image, '-device', 'isa-debug-exit,iobase=0x501,iosize=1',
    '-display', 'none', '-serial', 'none', '-no-reboot'], { timeout: 60_000 });
  // The entry reports 0x50 + its privilege level; isa-debug-exit makes QEMU exit with
  // (value << 1) | 1: ring 0 -> 0xa1.
  assert.equal(r.status, (0x50 << 1) | 1);
});

const kvm = existsSync('/dev/kvm') ? false : 'needs /dev/kvm';

test("on this host's KVM the probe agrees with what the host is, and its answer is cached", { skip: kvm }, async () => {
  const facts = cpuFacts();
  const result = await runUserSpaceProbe();
  if (facts.pvm) {
    assert.equal(result.userSpaceWorks, false, 'a nested PVM host cannot run guest user space (HOST-NOTES)');
    assert.match(result.detail, /user privilege/);
  } else if (facts.hardwareVirtualization !== 'none') {
    assert.equal(result.userSpaceWorks, true, result.detail);
  }
  const cachePath = join(mkdtempSync(join(tmpdir(), 'novm-probe-cache-')), 'probe.json');
  const first = await userSpaceProbe({ cachePath });
  assert.equal(first.cached, false);
  const second = await userSpaceProbe({ cachePath });
  assert.equal(second.cached, true);
  assert.equal(second.userSpaceWorks, first.userSpaceWorks);
  writeFileSync(cachePath, '{ not json');
  assert.equal((await userSpaceProbe({ cachePath })).cached, false);
});
