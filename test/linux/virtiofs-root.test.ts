// A VM made of a directory, under novm's own KVM VMM: the minimal kernel boots with no initrd,
// its real virtio-pci and virtiofs drivers find novm's in-process virtio-fs device (the union
// engine serving a host tree) and mount it as the root file system, and the kernel executes
// /init from it. What follows depends on the host, as in minimal-kernel.test.ts: where guest
// user space works, /init prints its marker and powers off; on nested PVM hosts init dies at
// its first system call (after being loaded through virtio-fs).
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { userSpaceProbe } from '../../src/host/user-space-probe.js';
import { bootTimeline, firstLine } from './boot-timeline.js';
import { minimalKernelPath } from './minimal-kernel.js';

const MARKER = 'novm-virtiofs-root-ok';
const DEADLINE_S = 600;

function rootTree(): string {
  const root = mkdtempSync(join(tmpdir(), 'novm-vfs-root-'));
  for (const d of ['bin', 'dev', 'proc', 'sys', 'tmp']) mkdirSync(join(root, d));
  copyFileSync('/bin/busybox', join(root, 'bin/busybox'));
  chmodSync(join(root, 'bin/busybox'), 0o755);
  symlinkSync('busybox', join(root, 'bin/sh'));
  writeFileSync(join(root, 'init'), `#!/bin/sh\necho ${MARKER}\necho from-the-guest > /tmp/written-by-guest\n/bin/busybox poweroff -f\n`, { mode: 0o755 });
  return root;
}

test('the minimal kernel mounts a host directory as its root through novm\'s in-process virtio-fs', { timeout: (DEADLINE_S + 60) * 1000 }, async (t) => {
  if (!existsSync('/dev/kvm')) return t.skip('no /dev/kvm');
  if (!existsSync('/bin/busybox')) return t.skip('busybox-static is missing');
  const kernel = minimalKernelPath();
  if (kernel === undefined) return t.skip('no minimal kernel: run scripts/build-minimal-kernel.sh first');
  const probe = await userSpaceProbe();
  const lower = rootTree();
  const upper = mkdtempSync(join(tmpdir(), 'novm-vfs-upper-'));
  const timeline = await bootTimeline({
    args: ['--kernel', kernel, '--read', `/=${lower}`, '--write', `/=${upper}`, '--memory', '128M', '--cpus', '1',
      '--cmdline', 'console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1 init=/init', '--timeout', String(DEADLINE_S)],
    deadlineMs: (DEADLINE_S + 20) * 1000,
    ...(probe.userSpaceWorks ? {} : { stopAt: /Kernel panic - not syncing/ }),
  });
  const tail = timeline.lines.map((l) => l.text).join('\n').slice(-3000);
  const mounted = firstLine(timeline, /VFS: Mounted root \(virtiofs filesystem\)/);
  const runInit = firstLine(timeline, /Run \/init as init process/);
  t.diagnostic(`root mounted at ${mounted ? (mounted.ms / 1000).toFixed(1) : '-'} s, Run /init at ${runInit ? (runInit.ms / 1000).toFixed(1) : '-'} s`);
  assert.ok(mounted, `the kernel did not mount the virtio-fs root:\n${tail}`);
  assert.ok(runInit, `no "Run /init":\n${tail}`);
  const after = timeline.lines.filter((l) => l.ms >= runInit.ms).map((l) => l.text).join('\n');
  if (probe.userSpaceWorks) {
    assert.match(after, new RegExp(MARKER), `/init did not run:\n${tail}`);
    assert.deepEqual(readdirSync(join(upper, 'tmp')), ['written-by-guest'], 'the guest\'s write landed in the writable layer');
  } else {
    // /init is a script: the kernel loaded busybox through virtio-fs and started it; its first
    // system call then fails the known way on PVM hosts.
    assert.match(after, /segfault at|Attempted to kill init|Kernel panic/, `not the known PVM failure after Run /init:\n${tail}`);
  }
});
