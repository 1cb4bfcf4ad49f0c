// Real Linux drivers against novm's vhost-user back ends, under QEMU TCG with Debian's kernel.
// One boot per device kind; each boot groups all checks for that device.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildInitramfs, qemuUnavailableReason, runGuest, type GuestRun } from '../qemu/harness.js';

const CLI = join(process.cwd(), 'dist/src/cli/main.js');
const skipReason = qemuUnavailableReason();

interface Backend {
  readonly child: ChildProcess;
  readonly socket: string;
  readonly log: () => string;
  readonly exited: Promise<number | null>;
}

/** Starts `novm vhost-user ...` and waits for its socket. */
async function startBackend(dir: string, args: readonly string[]): Promise<Backend> {
  const socket = join(dir, 'vhost.sock');
  const child = spawn(process.execPath, [CLI, 'vhost-user', ...args, '--socket', socket], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (log += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (log += s));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  for (let i = 0; i < 200 && !existsSync(socket); i++) await sleep(25);
  if (!existsSync(socket)) {
    child.kill();
    throw new Error(`back end did not listen: ${log}`);
  }
  return { child, socket, log: () => log, exited };
}

function describeRun(run: GuestRun, backend: Backend): string {
  return `status=${run.status} timedOut=${run.timedOut}\n--- guest ---\n${run.transcript.slice(-4000)}\n--- back end ---\n${backend.log()}`;
}

test('virtio-rng: Linux reads /dev/hwrng from the vhost-user back end', { skip: skipReason, timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'novm-rng-'));
  try {
    const backend = await startBackend(dir, ['rng']);
    const initramfs = buildInitramfs({
      modules: ['virtio_pci', 'virtio-rng'],
      script: [
        'cat /sys/devices/virtual/misc/hw_random/rng_available',
        'dd if=/dev/hwrng of=/tmp/r bs=4096 count=16 2>/dev/null',
        'echo bytes=$(wc -c < /tmp/r)',
        // 64 KiB of random data has (almost surely) all 256 byte values; zeros would have one.
        'echo distinct=$(od -An -v -tx1 /tmp/r | tr -s " " "\\n" | sort -u | grep -c .)',
      ].join('\n'),
    });
    const run = await runGuest({
      initramfs,
      qemuArgs: ['-chardev', `socket,id=rng0,path=${backend.socket}`, '-device', 'vhost-user-rng-pci,chardev=rng0'],
    });
    const detail = describeRun(run, backend);
    assert.equal(run.status, 0, detail);
    assert.match(run.output ?? '', /virtio_rng/, detail);
    assert.match(run.output ?? '', /bytes=65536/, detail);
    const distinct = Number(/distinct=(\d+)/.exec(run.output ?? '')?.[1]);
    assert.ok(distinct > 250, `only ${distinct} distinct byte values\n${detail}`);
    assert.equal(await backend.exited, 0, `back end exit\n${detail}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
