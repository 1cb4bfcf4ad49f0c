// `novm boot` end to end: Debian's own kernel (a bzImage) boots to its first console lines with
// the payload extracted on the host and cached; and every kind of bad input gives one clear
// line, exit status 2, and no stack trace.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from '../guests/core/assemble.js';

const cli = join(repoRoot(), 'dist/src/cli/main.js');
const debianKernel = existsSync('/boot') ? readdirSync('/boot').filter((f) => f.startsWith('vmlinuz-')).map((f) => join('/boot', f))[0] : undefined;

function novm(args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000, input: '' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs `novm boot` until `until` matches the console output (or the deadline), then stops it. */
function bootUntil(args: string[], until: RegExp, deadlineMs: number, env: Record<string, string>): Promise<{ output: string; matched: boolean; ms: number }> {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, [cli, 'boot', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let matched = false;
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      if (!matched && until.test(output)) {
        matched = true;
        child.kill('SIGTERM');
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const timer = setTimeout(() => child.kill('SIGTERM'), deadlineMs);
    child.on('exit', () => {
      clearTimeout(timer);
      resolve({ output, matched, ms: Date.now() - started });
    });
  });
}

const kvmAndKernel = !existsSync('/dev/kvm') ? 'needs /dev/kvm' : debianKernel === undefined ? 'needs Debian linux-image-amd64 (/boot/vmlinuz-*)' : false;

test("Debian's kernel boots to its first console lines; the extracted payload is cached", { skip: kvmAndKernel, timeout: 240_000 }, async () => {
  const cache = mkdtempSync(join(tmpdir(), 'novm-cache-'));
  const env = { XDG_CACHE_HOME: cache };
  const args = ['--kernel', debianKernel!, '--memory', '256M', '--verbose'];
  const first = await bootUntil(args, /ACPI: SPCR 0x/, 180_000, env);
  assert.ok(first.matched, `no ACPI table lines within the deadline:\n${first.output.slice(-2000)}`);
  assert.match(first.output, /Linux version \d+\.\d+/);
  assert.match(first.output, /payload extracted on the host/);
  assert.match(first.output, /ACPI: RSDP 0x00000000000E0000/);
  const cached = readdirSync(join(cache, 'novm', 'kernels'));
  assert.equal(cached.length, 1, `one extracted kernel in the cache: ${cached.join(', ')}`);
  const second = await bootUntil(args, /Linux version/, 180_000, env);
  assert.ok(second.matched, `second boot:\n${second.output.slice(-2000)}`);
  assert.match(second.output, /from cache/);
});

test('bad input: one line naming the file or flag, exit status 2, no stack trace', () => {
  const dir = mkdtempSync(join(tmpdir(), 'novm-bad-'));
  const truncated = join(dir, 'truncated');
  const garbage = join(dir, 'garbage');
  writeFileSync(garbage, Buffer.alloc(4096, 0x41));
  if (debianKernel) writeFileSync(truncated, readFileSync(debianKernel).subarray(0, 20_000));
  else writeFileSync(truncated, Buffer.from('MZ'));
  const cases: Array<[string[], RegExp]> = [
    [['boot', '--kernel', join(dir, 'missing')], /kernel .*missing: no such file/],
    [['boot', '--kernel', dir], /kernel .*: is a directory/],
    [['boot', '--kernel', garbage], /kernel .*garbage: not an ELF vmlinux, bzImage or multiboot kernel/],
    [['boot', '--kernel', truncated], /truncated/],
    [['boot', '--kernel', garbage, '--memory', 'lots'], /--memory "lots": not a size/],
    [['boot', '--kernel', garbage, '--memory', '1M'], /--memory: memory size must be between/],
    [['boot', '--kernel', garbage, '--memory', '4096G'], /--memory: memory size must be between/],
    [['boot', '--kernel', garbage, '--cpus', '0'], /--cpus 0: must be a whole number from 1 to/],
    [['boot', '--kernel', garbage, '--cpus', 'two'], /--cpus "two": not a whole number/],
  ];
  if (debianKernel) cases.push([['boot', '--kernel', debianKernel, '--initrd', join(dir, 'nope')], /initrd .*nope: no such file/]);
  for (const [args, message] of cases) {
    const r = novm(args);
    assert.equal(r.status, 2, `${args.join(' ')}: status ${r.status}, stderr ${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `${args.join(' ')}: one line, got ${r.stderr}`);
    assert.match(lines[0]!, message, args.join(' '));
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
});

test('an unwritable kernel cache is reported clearly and nothing is left behind', { skip: debianKernel === undefined ? 'needs a bzImage' : false }, () => {
  const cache = mkdtempSync(join(tmpdir(), 'novm-ro-cache-'));
  // As root, permission bits do not stop writes; a cache path under a regular file always fails.
  const blocker = join(cache, 'file');
  writeFileSync(blocker, 'x');
  const r = novm(['boot', '--kernel', debianKernel!, '--timeout', '1', '--memory', '64M'], { XDG_CACHE_HOME: blocker });
  assert.match(r.stderr, /cache/i);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  assert.deepEqual(readdirSync(cache), ['file']);
});
