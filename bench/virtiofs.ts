// bench:virtiofs — the same guest (QEMU TCG, Debian's kernel) mounts the same host directory
// through virtio-fs, served once by novm's vhost-user fs back end and once by QEMU's C
// virtiofsd (/usr/lib/qemu/virtiofsd, cache=auto, sandbox=chroot); fio and a metadata loop run
// in the guest. The ratio measured side by side in one run is the figure.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FIO, buildInitramfs, fioCommand, parseFio, qemuUnavailableReason, runGuest } from '../test/qemu/harness.js';

const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';
const reason = qemuUnavailableReason() ?? (existsSync(VIRTIOFSD) ? undefined : `${VIRTIOFSD} not installed`);
if (reason !== undefined) {
  console.log(`bench:virtiofs skipped: ${reason}`);
  process.exit(0);
}

const RUNTIME = Number(process.env['BENCH_RUNTIME'] ?? 8);
const common = `--directory=/mnt/bench --ioengine=psync --size=64m --time_based --runtime=${RUNTIME}`;
const allJobs: Array<[string, string]> = [
  ['seqwrite-1m', `${common} --rw=write --bs=1m --end_fsync=1`],
  ['seqread-1m', `${common} --rw=read --bs=1m --invalidate=1`],
  ['randread-4k', `${common} --rw=randread --bs=4k --invalidate=1`],
  ['randwrite-4k', `${common} --rw=randwrite --bs=4k`],
];
// While iterating: BENCH_JOBS=seqwrite-1m,randread-4k runs only those fio jobs, BENCH_SERVERS=novm
// only novm's back end (no ratio then), BENCH_NOVM_ARGS adds flags (e.g. --stats), BENCH_NODE_ARGS
// node options for it (e.g. --cpu-prof).
const only = process.env['BENCH_JOBS']?.split(',');
const jobs = only === undefined ? allJobs : allJobs.filter(([name]) => only.includes(name));
const servers = process.env['BENCH_SERVERS']?.split(',') ?? ['novm', 'virtiofsd'];
const novmArgs = process.env['BENCH_NOVM_ARGS']?.split(' ').filter((a) => a !== '') ?? [];
const script = [
  'mount -t virtiofs bench /mnt || exit 1',
  'mkdir -p /mnt/bench',
  ...jobs.map(([n, a]) => fioCommand(n, a)),
  // Metadata: create, stat and remove 300 files, timed with /proc/uptime (centiseconds).
  'cs() { t=$(cut -d" " -f1 /proc/uptime); echo ${t%.*}${t#*.}; }',
  'start=$(cs); i=0; while [ $i -lt 300 ]; do echo x > /mnt/bench/m$i; i=$((i+1)); done; ls -l /mnt/bench > /dev/null; rm /mnt/bench/m*; end=$(cs)',
  'echo "META-NS $(((end-start)*10000000))"',
  'umount /mnt',
].join('\n');

const dir = mkdtempSync(join(tmpdir(), 'novm-bench-vfs-'));
const initramfs = buildInitramfs({ modules: ['virtio_pci', 'virtiofs'], binaries: [FIO], script });

interface Figures {
  readonly iops: number[];
  readonly metaNs: number;
}

async function measure(label: string, start: (socket: string, shared: string) => ChildProcess): Promise<Figures> {
  const shared = join(dir, label);
  mkdirSync(shared);
  const socket = join(dir, `${label}.sock`);
  const server = start(socket, shared);
  try {
    for (let i = 0; i < 200 && !existsSync(socket); i++) await sleep(25);
    const run = await runGuest({
      initramfs, memoryMiB: 1024, timeoutMs: (jobs.length * (RUNTIME + 8) + 90) * 1000,
      qemuArgs: ['-chardev', `socket,id=f,path=${socket}`, '-device', 'vhost-user-fs-pci,chardev=f,tag=bench'],
    });
    const results = parseFio(run.output ?? '');
    const meta = /META-NS (\d+)/.exec(run.output ?? '');
    if (results.length !== jobs.length || meta === null) throw new Error(`${label}: results missing\n${run.transcript.slice(-3000)}`);
    return { iops: results.map((r) => r.readIops + r.writeIops), metaNs: Number(meta[1]) };
  } finally {
    // Let the server finish (novm prints --stats on SIGTERM) before the next one starts.
    const exited = new Promise((resolve) => server.once('exit', resolve));
    server.kill();
    await Promise.race([exited, sleep(5000)]);
  }
}

// BENCH_REPEAT=N runs each server N times in A B B A order (this machine's load drifts; other
// jobs share its 2 cores) and keeps each server's best figure per workload.
const REPEAT = Math.max(1, Number(process.env['BENCH_REPEAT'] ?? 1));
const starters: Record<string, (socket: string, shared: string) => ChildProcess> = {
  novm: (socket, shared) =>
    spawn(process.execPath, [...(process.env['BENCH_NODE_ARGS']?.split(' ').filter((x) => x !== '') ?? []), join(process.cwd(), 'dist/src/cli/main.js'), 'vhost-user', 'fs', '--write', `/=${shared}`, '--tag', 'bench', '--socket', socket, ...novmArgs], { stdio: ['ignore', 'inherit', 'inherit'] }),
  virtiofsd: (socket, shared) =>
    spawn(VIRTIOFSD, [`--socket-path=${socket}`, '-o', `source=${shared}`, '-o', 'cache=auto', '-o', 'sandbox=chroot'], { stdio: ['ignore', 'ignore', 'inherit'] }),
};

function best(runs: readonly Figures[]): Figures {
  return { iops: jobs.map((_, i) => Math.max(...runs.map((r) => r.iops[i]!))), metaNs: Math.min(...runs.map((r) => r.metaNs)) };
}

try {
  const runs = new Map<string, Figures[]>(servers.map((name) => [name, []]));
  for (let round = 0; round < REPEAT; round++) {
    for (const name of round % 2 === 0 ? servers : [...servers].reverse()) {
      const start = starters[name];
      if (start === undefined) throw new Error(`unknown server ${name} in BENCH_SERVERS`);
      runs.get(name)!.push(await measure(`${name}-${round}`, start));
    }
  }
  const novm = best(runs.get('novm') ?? []);
  if (!servers.includes('virtiofsd')) {
    jobs.forEach(([name], i) => console.log(`${name.padEnd(16)}  novm ${novm.iops[i]!.toFixed(0)} IOPS`));
    console.log(`metadata (300 create+stat+rm)  novm ${(novm.metaNs / 1e6).toFixed(0)} ms`);
  } else compare(novm, best(runs.get('virtiofsd')!));
} finally {
  rmSync(dir, { recursive: true, force: true });
}

function compare(novm: Figures, reference: Figures): void {
  if (REPEAT > 1) console.log(`best of ${REPEAT} runs per server, in A B B A order`);
  console.log('workload          novm IOPS   virtiofsd IOPS   ratio');
  const ratios: number[] = [];
  jobs.forEach(([name], i) => {
    const ratio = novm.iops[i]! / reference.iops[i]!;
    ratios.push(ratio);
    console.log(`${name.padEnd(16)}  ${novm.iops[i]!.toFixed(0).padStart(9)}   ${reference.iops[i]!.toFixed(0).padStart(14)}   ${ratio.toFixed(2)}`);
  });
  const metaRatio = reference.metaNs / novm.metaNs;
  ratios.push(metaRatio);
  console.log(`metadata (300 create+stat+rm)  novm ${(novm.metaNs / 1e6).toFixed(0)} ms   virtiofsd ${(reference.metaNs / 1e6).toFixed(0)} ms   ratio ${metaRatio.toFixed(2)}`);
  const geomean = Math.exp(ratios.reduce((s, r) => s + Math.log(r), 0) / ratios.length);
  console.log(`bench:virtiofs novm vhost-user fs / C virtiofsd (throughput, geometric mean of ${ratios.length} workloads, QEMU TCG guest): ${geomean.toFixed(2)}`);
}
