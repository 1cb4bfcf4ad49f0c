// POSIX behaviour through the real kernel client: a C probe (test/fs/posix-probe.c, compiled here
// with the machine's gcc) runs against a writable mount and against a read-only tree + writable
// layer (so every check starts from copied-up or whiteout state), and against the host's own
// ext4 directory as a reference: the same checks must pass on all three.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cleanup, fuseUnavailable, scratchDir, sh, startMount, toolMissing } from './mount-harness.js';

const skip = fuseUnavailable() || toolMissing('gcc');

describe('POSIX behaviour through the kernel client', { skip, timeout: 120_000 }, () => {
  let dir = '';
  let probe = '';
  before(() => {
    dir = scratchDir('posix');
    probe = join(dir, 'posix-probe');
    const cc = spawnSync('gcc', ['-O1', '-Wall', '-o', probe, resolve('test/fs/posix-probe.c')], { encoding: 'utf8' });
    assert.equal(cc.status, 0, cc.stderr);
  });
  after(() => cleanup(dir));

  it('passes on the host ext4 (reference)', async () => {
    mkdirSync(join(dir, 'ext4'));
    const r = await sh(`${probe} ${join(dir, 'ext4')}`);
    assert.equal(r.code, 0, r.out);
  });

  it('passes on a writable layer', async () => {
    mkdirSync(join(dir, 'up1'));
    const m = await startMount(['--write', `/=${dir}/up1`], join(dir, 'mnt1'));
    try {
      const r = await sh(`${probe} ${m.mountPoint}`);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /all ok/);
    } finally {
      assert.equal(await m.stop(), 0);
    }
  });

  it('passes on a read-only layer holding the same names + a writable layer', async () => {
    mkdirSync(join(dir, 'low2'));
    mkdirSync(join(dir, 'up2'));
    for (const name of ['a', 'b', 'lockme', 'sparse']) writeFileSync(join(dir, 'low2', name), `lower ${name}`);
    const m = await startMount(['--read', `/=${dir}/low2`, '--write', `/=${dir}/up2`], join(dir, 'mnt2'));
    try {
      const r = await sh(`${probe} ${m.mountPoint}`);
      assert.equal(r.code, 0, r.out);
      assert.match(r.out, /all ok/);
    } finally {
      assert.equal(await m.stop(), 0);
    }
  });
});
