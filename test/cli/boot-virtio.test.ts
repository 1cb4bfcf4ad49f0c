// `novm boot --disk FILE --rng` end to end: the virtio test guest (a freestanding multiboot
// kernel with a minimal virtio driver) finds both devices on the PCI bus novm builds, reads the
// disk, writes a sector and reads random bytes; the host checks the image file afterwards.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildGuest, fnv1a32, repoRoot } from '../guests/build.js';
import { patternByte, VIRTIO_GUEST } from '../guests/virtio/guest.js';

const skip = existsSync('/dev/kvm') ? false : 'needs /dev/kvm';
const SECTOR = 512;
const SECTORS = 64;

test('novm boot attaches --disk and --rng as virtio-pci devices a guest driver uses', { skip, timeout: 120_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'novm-boot-virtio-'));
  const image = join(dir, 'disk.img');
  const original = new Uint8Array(randomBytes(SECTORS * SECTOR));
  writeFileSync(image, original);
  const seed = 77;
  const wsector = 9;
  const cmdline = ['transport=pci', `sectors=${SECTORS}`, `sum0=0x${fnv1a32(original.subarray(0, SECTOR)).toString(16)}`, `wsector=${wsector}`, `seed=${seed}`].join(' ');
  const r = spawnSync(process.execPath, [join(repoRoot(), 'dist/src/cli/main.js'), 'boot', '--kernel', buildGuest(VIRTIO_GUEST), '--cmdline', cmdline,
    '--disk', image, '--rng', '--memory', '32M', '--timeout', '90'], { encoding: 'utf8', input: '', timeout: 110_000 });
  assert.equal(r.status, 0, `status ${r.status}\n${r.stdout}\n${r.stderr}`);
  assert.doesNotMatch(r.stdout, /FAIL/);
  assert.match(r.stdout, /PASS/);
  const after = readFileSync(image);
  for (let i = 0; i < SECTOR; i++) assert.equal(after[wsector * SECTOR + i], patternByte(seed, i), `byte ${i} of the written sector`);
  const untouched = Buffer.concat([after.subarray(0, wsector * SECTOR), after.subarray((wsector + 1) * SECTOR)]);
  const expected = Buffer.concat([original.subarray(0, wsector * SECTOR), original.subarray((wsector + 1) * SECTOR)]);
  assert.ok(untouched.equals(expected), 'every other sector is unchanged');
});
