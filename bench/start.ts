// bench:start — time from process start to the guest's first port write, and the VMM's own
// memory (RSS minus the guest RAM the guest touched), for a 1-vCPU 128 MiB VM: novm against
// a minimal C VMM on the same KVM (the floor), with QEMU's RSS for the same guest size beside.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { USER_SYSCALL_PROBE_IMAGE } from '../src/host/user-syscall-probe-image.js';
import { assembleGuest, repoRoot } from '../test/guests/core/assemble.js';

const ROUNDS = Number(process.env['NOVM_BENCH_ROUNDS'] ?? 7);

interface Sample { ms: number; overhead: number }

function timeToFirstWrite(command: string, args: string[]): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    let seen = false;
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const m = /FIRST-WRITE rss=(\d+) guest=(\d+)/.exec(out);
      if (m && !seen) {
        seen = true;
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        resolve({ ms, overhead: Number(m[1]) - Number(m[2]) });
      }
    });
    child.on('exit', (code) => { if (!seen) reject(new Error(`${command} exited ${code}: ${out}`)); });
  });
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function qemuRss(guest: string): Promise<number | undefined> {
  const child = spawn('qemu-system-x86_64', ['-accel', 'kvm', '-m', '128', '-smp', '1', '-kernel', guest, '-display', 'none', '-serial', 'none', '-no-reboot', '-nodefaults'], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 1500));
  let rss: number | undefined;
  try {
    rss = Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1]) * 1024;
  } catch {
    rss = undefined;
  }
  child.kill('SIGKILL');
  return rss;
}

async function main(): Promise<void> {
  const floor = join(tmpdir(), 'novm-kvm-exit-loop-start');
  execFileSync('gcc', ['-O2', '-o', floor, join(repoRoot(), 'bench/native/kvm-exit-loop.c')]);
  const guest = assembleGuest('hello');
  const child = join(repoRoot(), 'dist/bench/start-child.js');
  const c: Sample[] = [], n: Sample[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    c.push(await timeToFirstWrite(floor, [guest, '0', '0', '128', '--first-write']));
    n.push(await timeToFirstWrite(process.execPath, [child]));
  }
  const cMs = median(c.map((s) => s.ms)), nMs = median(n.map((s) => s.ms));
  const cMiB = median(c.map((s) => s.overhead)) / 2 ** 20, nMiB = median(n.map((s) => s.overhead)) / 2 ** 20;
  // QEMU needs a multiboot image: the host probe's guest carries a multiboot header.
  const probeImage = join(tmpdir(), 'novm-probe-image.bin');
  writeFileSync(probeImage, USER_SYSCALL_PROBE_IMAGE);
  const q = await qemuRss(probeImage);
  console.log(`C floor: ${cMs.toFixed(1)} ms to first port write, ${cMiB.toFixed(1)} MiB VMM overhead`);
  console.log(`novm:    ${nMs.toFixed(1)} ms to first port write, ${nMiB.toFixed(1)} MiB VMM overhead (target < 40 MiB)`);
  console.log(`QEMU (-accel kvm, 128 MiB, same guest, reference): ${q === undefined ? 'not measured' : `${(q / 2 ** 20).toFixed(1)} MiB RSS`}`);
  console.log(`ratio novm/C start time: ${(nMs / cMs).toFixed(2)}x (target <= 3x)`);
}

await main();
