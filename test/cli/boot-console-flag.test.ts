// `novm boot --console`: a wrong kind is the user's mistake: one line naming the flag, exit
// status 2, no stack trace, and nothing booted (the check comes before the kernel is read).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from '../guests/core/assemble.js';

const cli = join(repoRoot(), 'dist/src/cli/main.js');

test('novm boot --console accepts serial or virtio and names the flag otherwise', () => {
  const r = spawnSync(process.execPath, [cli, 'boot', '--kernel', '/nonexistent/vmlinux', '--console', 'hvc'], { encoding: 'utf8', timeout: 60_000, input: '' });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /--console hvc: must be serial or virtio/);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.doesNotMatch(r.stderr, /at .*\.js:\d+/);
  // A valid kind gets past the flag check to the (missing) kernel.
  const ok = spawnSync(process.execPath, [cli, 'boot', '--kernel', '/nonexistent/vmlinux', '--console', 'virtio'], { encoding: 'utf8', timeout: 60_000, input: '' });
  assert.equal(ok.status, 2, ok.stderr);
  assert.match(ok.stderr, /nonexistent\/vmlinux/);
});
