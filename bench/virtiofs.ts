// bench:virtiofs — the same guest (QEMU TCG, Debian's kernel) mounts the same host directory
// through virtio-fs, served once by novm's vhost-user fs back end and once by QEMU's C
// virtiofsd (/usr/lib/qemu/virtiofsd, cache=auto, sandbox=chroot); fio and a metadata loop run
// in the guest. The ratios measured side by side in one run are the figures.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { median } from './median.js';
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
// node options for it (e.g. --cpu-prof), BENCH_VIRTIOFSD_ARGS flags for virtiofsd (e.g. -d to log
// every request).
const only = process.env['BENCH_JOBS']?.split(',');
const jobs = only === undefined ? allJobs : allJobs.filter(([name]) => only.includes(name));
const servers = process.env['BENCH_SERVERS']?.split(',') ?? ['novm', 'virtiofsd'];
const novmArgs = process.env['BENCH_NOVM_ARGS']?.split(' ').filter((a) => a !== '') ?? [];
const virtiofsdArgs = process.env['BENCH_VIRTIOFSD_ARGS']?.split(' ').filter((a) => a !== '') ?? [];
// Metadata: BENCH_META_FILES files created with a write (`echo x > f`), listed with `ls -l`, removed
// with `rm`, in a directory of their own; BENCH_META_LOOPS times per guest, each timed from the
// guest's monotonic clock in nanoseconds ("now at" in /proc/timer_list; /proc/uptime's centiseconds
// if absent). One loop is ~9 requests per file, all serial: the figure is a round-trip latency.
const META_FILES = Math.max(1, Number(process.env['BENCH_META_FILES'] ?? 1000));
const META_LOOPS = Math.max(1, Number(process.env['BENCH_META_LOOPS'] ?? 2));
const metaScript = [
  'ns() { set -- $(sed -n 3p /proc/timer_list 2>/dev/null); if [ "$1 $2" = "now at" ]; then echo $3; else t=$(cut -d" " -f1 /proc/uptime); echo $((${t%.*}${t#*.}*10000000)); fi; }',
  'mkdir -p /mnt/meta',
  `l=0; while [ $l -lt ${META_LOOPS} ]; do`,
  `  t0=$(ns); i=0; while [ $i -lt ${META_FILES} ]; do echo x > /mnt/meta/m$i; i=$((i+1)); done; t1=$(ns); ls -l /mnt/meta > /dev/null; t2=$(ns); rm /mnt/meta/m*; t3=$(ns)`,
  // The total, then each phase (create, list, remove) for BENCH_VERBOSE.
  '  echo "META-NS $((t3-t0)) $((t1-t0)) $((t2-t1)) $((t3-t2))"; l=$((l+1))',
  'done',
];
const fioScript = ['mount -t virtiofs bench /mnt || exit 1', 'mkdir -p /mnt/bench', ...jobs.map(([n, a]) => fioCommand(n, a)), 'umount /mnt'].join('\n');
const metaGuestScript = ['mount -t virtiofs bench /mnt || exit 1', ...metaScript, 'umount /mnt'].join('\n');

// fio serves a directory on the host's disk (as before). The metadata rounds serve one on a tmpfs
// (BENCH_META_DIR, default /dev/shm): this host's ext4 root is mounted with `discard`, and its
// journal made the same O_CREAT cost 150-540 us from one guest to the next (novm --stats,
// NOVM_FS_PROFILE=1) against 44 us on tmpfs, a swing neither server controls that drowned the
// servers' own per-request cost. BENCH_META_DIR=/tmp measures on the disk instead.
const dir = mkdtempSync(join(tmpdir(), 'novm-bench-vfs-'));
const metaDir = mkdtempSync(join(process.env['BENCH_META_DIR'] ?? (existsSync('/dev/shm') ? '/dev/shm' : tmpdir()), 'novm-bench-vfs-meta-'));
const fioInitramfs = jobs.length > 0 ? buildInitramfs({ modules: ['virtio_pci', 'virtiofs'], binaries: [FIO], script: fioScript }) : '';
const metaInitramfs = buildInitramfs({ modules: ['virtio_pci', 'virtiofs'], script: metaGuestScript });

interface Figures {
  /** Per fio job (empty in a metadata round). */
  readonly iops: number[];
  /** Per metadata loop in this guest, nanoseconds (empty in a fio round). */
  readonly metaNs: number[];
  /** Per loop: create, list and remove phases, nanoseconds. */
  readonly phases: number[][];
}

async function measure(label: string, withFio: boolean, start: (socket: string, shared: string) => ChildProcess): Promise<Figures> {
  const shared = join(withFio ? dir : metaDir, label);
  mkdirSync(shared);
  const socket = join(dir, `${label}.sock`);
  const server = start(socket, shared);
  try {
    for (let i = 0; i < 200 && !existsSync(socket); i++) await sleep(25);
    const fioJobs = withFio ? jobs.length : 0;
    const loopCount = withFio ? 0 : META_LOOPS;
    const run = await runGuest({
      initramfs: withFio ? fioInitramfs : metaInitramfs, memoryMiB: 1024,
      timeoutMs: (fioJobs * (RUNTIME + 8) + 90 + (loopCount * META_FILES) / 50) * 1000,
      qemuArgs: ['-chardev', `socket,id=f,path=${socket}`, '-device', 'vhost-user-fs-pci,chardev=f,tag=bench'],
    });
    const results = withFio ? parseFio(run.output ?? '') : [];
    const loops = [...(run.output ?? '').matchAll(/META-NS (\d+) (\d+) (\d+) (\d+)/g)];
    const meta = loops.map((m) => Number(m[1]));
    const phases = loops.map((m) => [m[2], m[3], m[4]].map((x) => Number(x)));
    if (results.length !== fioJobs || meta.length !== loopCount) throw new Error(`${label}: results missing\n${run.transcript.slice(-3000)}`);
    return { iops: results.map((r) => r.readIops + r.writeIops), metaNs: meta, phases };
  } finally {
    // Let the server finish (novm prints --stats on SIGTERM) before the next one starts.
    const exited = new Promise((resolve) => server.once('exit', resolve));
    server.kill();
    await Promise.race([exited, sleep(5000)]);
  }
}

// Rounds: each boots one guest per server, the order alternating (A B, B A, ...: this machine's
// load drifts, other jobs share its 2 cores). BENCH_REPEAT fio rounds (each server's best figure
// per job is kept), then BENCH_META_ROUNDS metadata rounds (BENCH_META_LOOPS loops per guest; a
// round's figure per server is the median of its loops, the ratio is the median of the rounds'
// ratios, printed with the best-of ratio and the range beside it).
const REPEAT = jobs.length > 0 ? Math.max(1, Number(process.env['BENCH_REPEAT'] ?? 1)) : 0;
const META_ROUNDS = Math.max(1, Number(process.env['BENCH_META_ROUNDS'] ?? 7));
const starters: Record<string, (socket: string, shared: string) => ChildProcess> = {
  novm: (socket, shared) =>
    spawn(process.execPath, [...(process.env['BENCH_NODE_ARGS']?.split(' ').filter((x) => x !== '') ?? []), join(process.cwd(), 'dist/src/cli/main.js'), 'vhost-user', 'fs', '--write', `/=${shared}`, '--tag', 'bench', '--socket', socket, ...novmArgs], { stdio: ['ignore', 'inherit', 'inherit'] }),
  virtiofsd: (socket, shared) =>
    spawn(VIRTIOFSD, [`--socket-path=${socket}`, '-o', `source=${shared}`, '-o', 'cache=auto', '-o', 'sandbox=chroot', ...virtiofsdArgs], { stdio: ['ignore', 'ignore', 'inherit'] }),
};

/** A server's best fio figure per job over the rounds that ran fio. */
function bestIops(runs: readonly Figures[]): number[] {
  return jobs.map((_, i) => Math.max(...runs.map((r) => r.iops[i]!)));
}

/** A round's metadata figure for one server: the median of its loops in that guest. */
const metaOf = (f: Figures): number => median(f.metaNs);
const ms = (ns: number): string => `${(ns / 1e6).toFixed(0)} ms`;
const metaLabel = `metadata (${META_FILES} create+write, ls -l, rm)`;

try {
  const fioRuns = new Map<string, Figures[]>(servers.map((name) => [name, []]));
  const runs = new Map<string, Figures[]>(servers.map((name) => [name, []]));
  for (let round = 0; round < REPEAT + META_ROUNDS; round++) {
    const withFio = round < REPEAT;
    for (const name of round % 2 === 0 ? servers : [...servers].reverse()) {
      const start = starters[name];
      if (start === undefined) throw new Error(`unknown server ${name} in BENCH_SERVERS`);
      const figures = await measure(`${name}-${round}`, withFio, start);
      (withFio ? fioRuns : runs).get(name)!.push(figures);
      if (!withFio && process.env['BENCH_VERBOSE'] === '1') console.log(`round ${round - REPEAT} ${name}: metadata ${figures.metaNs.map((t, i) => `${ms(t)} (${figures.phases[i]!.map(ms).join(' + ')})`).join(', ')}`);
    }
  }
  const novm = runs.get('novm') ?? [];
  if (!servers.includes('virtiofsd')) {
    const iops = jobs.length > 0 ? bestIops(fioRuns.get('novm')!) : [];
    jobs.forEach(([name], i) => console.log(`${name.padEnd(16)}  novm ${iops[i]!.toFixed(0)} IOPS`));
    console.log(`${metaLabel}  novm median ${ms(median(novm.map(metaOf)))}, best ${ms(Math.min(...novm.map(metaOf)))} (${META_ROUNDS} guests x ${META_LOOPS} loops)`);
  } else compare(fioRuns, novm, runs.get('virtiofsd')!);
} finally {
  rmSync(dir, { recursive: true, force: true });
  rmSync(metaDir, { recursive: true, force: true });
}

function compare(fioRuns: ReadonlyMap<string, Figures[]>, novm: readonly Figures[], reference: readonly Figures[]): void {
  const ratios: number[] = [];
  if (jobs.length > 0) {
    if (REPEAT > 1) console.log(`fio: best of ${REPEAT} runs per server, order alternating`);
    console.log('workload          novm IOPS   virtiofsd IOPS   ratio');
    const a = bestIops(fioRuns.get('novm')!);
    const b = bestIops(fioRuns.get('virtiofsd')!);
    jobs.forEach(([name], i) => {
      const ratio = a[i]! / b[i]!;
      ratios.push(ratio);
      console.log(`${name.padEnd(16)}  ${a[i]!.toFixed(0).padStart(9)}   ${b[i]!.toFixed(0).padStart(14)}   ${ratio.toFixed(2)}`);
    });
  }
  // Per round: virtiofsd time / novm time, each the median of its loops in that round's guest.
  const perRound = novm.map((f, r) => metaOf(reference[r]!) / metaOf(f));
  const metaRatio = median(perRound);
  const bestRatio = Math.min(...reference.map(metaOf)) / Math.min(...novm.map(metaOf));
  ratios.push(metaRatio);
  console.log(`${metaLabel}, host dir on ${process.env['BENCH_META_DIR'] ?? '/dev/shm'}, ${META_ROUNDS} rounds x ${META_LOOPS} loops, order alternating`);
  console.log(`  per-round ratios ${perRound.map((r) => r.toFixed(2)).join(' ')}`);
  console.log(`  novm median ${ms(median(novm.map(metaOf)))}   virtiofsd median ${ms(median(reference.map(metaOf)))}   ratio ${metaRatio.toFixed(2)} (median of rounds; best-of ratio ${bestRatio.toFixed(2)}, range ${Math.min(...perRound).toFixed(2)}-${Math.max(...perRound).toFixed(2)})`);
  const geomean = Math.exp(ratios.reduce((s, r) => s + Math.log(r), 0) / ratios.length);
  console.log(`bench:virtiofs novm vhost-user fs / C virtiofsd (throughput, geometric mean of ${ratios.length} workloads, QEMU TCG guest): ${geomean.toFixed(2)}`);
}
