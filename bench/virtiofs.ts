// bench:virtiofs — one guest (QEMU TCG, Debian's kernel) mounts two virtio-fs devices at once:
// one served by novm's vhost-user fs back end, one by QEMU's C virtiofsd
// (/usr/lib/qemu/virtiofsd, cache=auto, sandbox=chroot), each over a host directory of its own.
// fio (in 1 s slices) and a metadata loop run in that guest against each mount in turn. Each
// round boots a new guest; its ratios are paired (same guest, same boot, same minute of this
// host's load), and the figure per workload is the median of the rounds' ratios.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { median } from './median.js';
import { FIO, buildInitramfs, fioJobsCommand, parseFio, qemuUnavailableReason, runGuest } from '../test/qemu/harness.js';

const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';
const reason = qemuUnavailableReason() ?? (existsSync(VIRTIOFSD) ? undefined : `${VIRTIOFSD} not installed`);
if (reason !== undefined) {
  console.log(`bench:virtiofs skipped: ${reason}`);
  process.exit(0);
}

// Each server runs each fio job for BENCH_RUNTIME seconds per guest, cut into BENCH_SLICES
// slices taken in turns (A B B A A B ...) by one fio invocation (--stonewall: one slice at a
// time, each over the server's own file). Why slices: this host's speed drifts over seconds. An
// A/A run (novm against a second novm, 8 s turns) gave per-round ratios from 0.91 to 1.55 for
// the same server; that noise, not the servers, decided the sequential rows. Short alternating
// slices put both servers under the same drift.
const RUNTIME = Number(process.env['BENCH_RUNTIME'] ?? 8);
const SLICES = Math.max(1, Math.round(Number(process.env['BENCH_SLICES'] ?? 8)));
const sliceMs = Math.max(100, Math.round((RUNTIME * 1000) / SLICES));
const fioGlobals = `--ioengine=psync --size=64m --time_based --runtime=${sliceMs}ms`;
const allJobs: Array<[string, string]> = [
  ['seqwrite-1m', '--rw=write --bs=1m --end_fsync=1'],
  ['seqread-1m', '--rw=read --bs=1m --invalidate=1'],
  ['randread-4k', '--rw=randread --bs=4k --invalidate=1'],
  ['randwrite-4k', '--rw=randwrite --bs=4k'],
];
// While iterating: BENCH_JOBS=seqwrite-1m,randread-4k runs only those fio jobs (none: metadata
// only), BENCH_SERVERS=novm only novm's back end (no ratio then), BENCH_SERVERS=novm,novm-b an
// A/A run against a second novm (the ratios then show this host's noise), BENCH_NOVM_ARGS adds flags
// (e.g. --stats), BENCH_NODE_ARGS node options for it (e.g. --cpu-prof), BENCH_VIRTIOFSD_ARGS
// flags for virtiofsd (e.g. -d to log every request).
const only = process.env['BENCH_JOBS']?.split(',');
const jobs = only === undefined ? allJobs : allJobs.filter(([name]) => only.includes(name));
const servers = process.env['BENCH_SERVERS']?.split(',') ?? ['novm', 'virtiofsd'];
const novmArgs = process.env['BENCH_NOVM_ARGS']?.split(' ').filter((a) => a !== '') ?? [];
const virtiofsdArgs = process.env['BENCH_VIRTIOFSD_ARGS']?.split(' ').filter((a) => a !== '') ?? [];
// Metadata: BENCH_META_FILES files created with a write (`echo x > f`), listed with `ls -l`, removed
// with `rm`, in a directory of their own; BENCH_META_LOOPS times per server and guest, each timed
// from the guest's monotonic clock in nanoseconds ("now at" in /proc/timer_list; /proc/uptime's
// centiseconds if absent). One loop is ~9 requests per file, all serial: the figure is a
// round-trip latency. A server's first loop in a guest includes its cold start (JIT, caches).
const META_FILES = Math.max(1, Number(process.env['BENCH_META_FILES'] ?? 1000));
const META_LOOPS = Math.max(1, Number(process.env['BENCH_META_LOOPS'] ?? 2));

/** The servers in the order their devices are attached and mounted in a round, alternating
 *  so neither always has the first PCI device and mount. With novm always first, seqwrite-1m
 *  came out at 0.86-0.93 in four runs; with virtiofsd first, 0.99 (four rounds); alternating,
 *  1.10 (six rounds). Whether position matters is not settled, so it is balanced. */
const attachOrder = (round: number): string[] => (round % 2 === 0 ? servers : [...servers].reverse());

/** The order the servers take their turns in within one guest: A B B A ... (or B A A B ... in
 *  odd rounds), so neither always runs on the guest's colder or warmer side. */
function turns(round: number, count: number): string[] {
  const first = attachOrder(round);
  return Array.from({ length: count }, (_, i) => (i % 2 === 0 ? first : [...first].reverse())).flat();
}
const mountsOf = (round: number): string[] => attachOrder(round).map((name) => `mkdir -p /mnt/${name} && mount -t virtiofs ${name} /mnt/${name} || exit 1`);
const unmounts = servers.map((name) => `umount /mnt/${name}`);
/** The job names of a server's timed fio slices start with this (JOB@SERVER#K); its untimed
 *  slice is JOB@SERVER~warm. */
const timedSlices = (job: string, server: string): string => `${job}@${server}#`;
function fioScript(round: number): string {
  // Per job, one fio run of both servers' slices, each named after its server (timedSlices).
  // First one untimed slice per server: a server's first slice in a guest ran at 40-90 % of its
  // later ones (A/A, novm against novm, seqwrite-1m), whichever went first.
  const slice = (job: string, args: string, name: string, k: number | 'warm'): readonly [string, string] =>
    [k === 'warm' ? `${job}@${name}~warm` : `${timedSlices(job, name)}${k}`, `--stonewall --filename=/mnt/${name}/bench/${job} ${args}`];
  const lines = jobs.map(([job, args], j) => fioJobsCommand(job, fioGlobals, [
    ...turns(round + j, 1).map((name) => slice(job, args, name, 'warm')),
    ...turns(round + j, SLICES).map((name, k) => slice(job, args, name, k)),
  ]));
  return [...mountsOf(round), ...servers.map((name) => `mkdir -p /mnt/${name}/bench`), ...lines, ...unmounts].join('\n');
}
function metaScript(round: number): string {
  const loop = (name: string): string => {
    const d = `/mnt/${name}/meta`;
    return `t0=$(ns); i=0; while [ $i -lt ${META_FILES} ]; do echo x > ${d}/m$i; i=$((i+1)); done; t1=$(ns); ls -l ${d} > /dev/null; t2=$(ns); rm ${d}/m*; t3=$(ns)\n` +
      // The total, then each phase (create, list, remove) for BENCH_VERBOSE.
      `echo "META-NS ${name} $((t3-t0)) $((t1-t0)) $((t2-t1)) $((t3-t2))"`;
  };
  return [
    'ns() { set -- $(sed -n 3p /proc/timer_list 2>/dev/null); if [ "$1 $2" = "now at" ]; then echo $3; else t=$(cut -d" " -f1 /proc/uptime); echo $((${t%.*}${t#*.}*10000000)); fi; }',
    ...mountsOf(round), ...servers.map((name) => `mkdir -p /mnt/${name}/meta`),
    ...turns(round, META_LOOPS).map(loop),
    ...unmounts,
  ].join('\n');
}

// fio serves directories on the host's disk (as before). The metadata rounds serve ones on a tmpfs
// (BENCH_META_DIR, default /dev/shm): this host's ext4 root is mounted with `discard`, and its
// journal made the same O_CREAT cost 150-540 us from one guest to the next (novm --stats,
// NOVM_FS_PROFILE=1) against 44 us on tmpfs, a swing neither server controls that drowned the
// servers' own per-request cost. BENCH_META_DIR=/tmp measures on the disk instead.
const dir = mkdtempSync(join(process.env['BENCH_FIO_DIR'] ?? tmpdir(), 'novm-bench-vfs-'));
const metaDir = mkdtempSync(join(process.env['BENCH_META_DIR'] ?? (existsSync('/dev/shm') ? '/dev/shm' : tmpdir()), 'novm-bench-vfs-meta-'));
const initramfs = (script: string, withFio: boolean): string =>
  buildInitramfs({ modules: ['virtio_pci', 'virtiofs'], binaries: withFio ? [FIO] : [], script });

/** One server's figures in one guest. */
interface Figures {
  /** Per fio job (empty in a metadata round): the mean of its slices, and the slices in order. */
  readonly iops: number[];
  readonly slices: number[][];
  /** Per metadata loop, nanoseconds (empty in a fio round). */
  readonly metaNs: number[];
  /** Per loop: create, list and remove phases, nanoseconds. */
  readonly phases: number[][];
}

const startNovm = (tag: string) => (socket: string, shared: string): ChildProcess =>
  spawn(process.execPath, [...(process.env['BENCH_NODE_ARGS']?.split(' ').filter((x) => x !== '') ?? []), join(process.cwd(), 'dist/src/cli/main.js'), 'vhost-user', 'fs', '--write', `/=${shared}`, '--tag', tag, '--socket', socket, ...novmArgs], { stdio: ['ignore', 'inherit', 'inherit'] });
const starters: Record<string, (socket: string, shared: string) => ChildProcess> = {
  novm: startNovm('novm'),
  'novm-b': startNovm('novm-b'),
  virtiofsd: (socket, shared) =>
    spawn(VIRTIOFSD, [`--socket-path=${socket}`, '-o', `source=${shared}`, '-o', 'cache=auto', '-o', 'sandbox=chroot', ...virtiofsdArgs], { stdio: ['ignore', 'ignore', 'inherit'] }),
};
for (const name of servers) if (starters[name] === undefined) throw new Error(`unknown server ${name} in BENCH_SERVERS`);
if (servers.length > 2 || new Set(servers).size !== servers.length) throw new Error('BENCH_SERVERS names one server, or two different ones');

/** Boots one guest with every server's device attached (tag = server name) and runs a round. */
async function measure(round: number, withFio: boolean): Promise<Map<string, Figures>> {
  const label = `${withFio ? 'fio' : 'meta'}-${round}`;
  const started = attachOrder(round).map((name) => {
    const shared = join(withFio ? dir : metaDir, `${label}-${name}`);
    mkdirSync(shared);
    const socket = join(dir, `${label}-${name}.sock`);
    return { name, socket, process: starters[name]!(socket, shared) };
  });
  try {
    for (let i = 0; i < 200 && !started.every((s) => existsSync(s.socket)); i++) await sleep(25);
    const fioJobs = withFio ? jobs.length * servers.length * (SLICES + 1) : 0;
    const loopCount = withFio ? 0 : META_LOOPS * servers.length;
    const run = await runGuest({
      initramfs: withFio ? initramfs(fioScript(round), true) : initramfs(metaScript(round), false), memoryMiB: 1024,
      timeoutMs: (fioJobs * (sliceMs / 1000 + 2) + jobs.length * 10 + 90 + (loopCount * META_FILES) / 50) * 1000,
      qemuArgs: started.flatMap((s, i) => ['-chardev', `socket,id=fs${i},path=${s.socket}`, '-device', `vhost-user-fs-pci,chardev=fs${i},tag=${s.name}`]),
    });
    const results = withFio ? parseFio(run.output ?? '') : [];
    const loops = [...(run.output ?? '').matchAll(/META-NS (\S+) (\d+) (\d+) (\d+) (\d+)/g)];
    if (results.length !== fioJobs || loops.length !== loopCount) throw new Error(`${label}: results missing\n${run.transcript.slice(-3000)}`);
    return new Map(servers.map((name) => {
      const mine = loops.filter((m) => m[1] === name);
      // A server's figure for a job: the mean of its slices (all of the same length).
      const slices = results.length === 0 ? [] : jobs.map(([job]) => results.filter((x) => x.name.startsWith(timedSlices(job, name))).map((r) => r.readIops + r.writeIops));
      const iops = slices.map((s) => s.reduce((sum, x) => sum + x, 0) / s.length);
      return [name, { iops, slices, metaNs: mine.map((m) => Number(m[2])), phases: mine.map((m) => [m[3], m[4], m[5]].map((x) => Number(x))) }];
    }));
  } finally {
    // Let the servers finish (novm prints --stats on SIGTERM) before the next round starts.
    await Promise.all(started.map(async (s) => {
      const exited = new Promise((resolve) => s.process.once('exit', resolve));
      s.process.kill();
      await Promise.race([exited, sleep(5000)]);
    }));
  }
}

// BENCH_REPEAT fio rounds (default 4), then BENCH_META_ROUNDS metadata rounds (default 8), one
// guest each; even counts, so each server has the first device in half of them. A round's
// metadata figure per server is the median of its loops in that guest.
const REPEAT = jobs.length > 0 ? Math.max(1, Number(process.env['BENCH_REPEAT'] ?? 4)) : 0;
const META_ROUNDS = Math.max(1, Number(process.env['BENCH_META_ROUNDS'] ?? 8));
const metaOf = (f: Figures): number => median(f.metaNs);
/** One server's figures, round by round. */
const pick = (rounds: ReadonlyArray<ReadonlyMap<string, Figures>>, name: string): Figures[] => rounds.map((r) => r.get(name)!);
const ms = (ns: number): string => `${(ns / 1e6).toFixed(0)} ms`;
const metaLabel = `metadata (${META_FILES} create+write, ls -l, rm)`;

try {
  const fioRounds: Array<Map<string, Figures>> = [];
  const metaRounds: Array<Map<string, Figures>> = [];
  for (let round = 0; round < REPEAT + META_ROUNDS; round++) {
    const withFio = round < REPEAT;
    const figures = await measure(round, withFio);
    (withFio ? fioRounds : metaRounds).push(figures);
    if (process.env['BENCH_VERBOSE'] !== '1') continue;
    for (const [name, f] of figures) {
      if (withFio) console.log(`round ${round} ${name}: ${jobs.map(([job], i) => `${job} ${f.iops[i]!.toFixed(0)} (slices ${f.slices[i]!.map((x) => x.toFixed(0)).join(' ')})`).join(', ')} IOPS`);
      else console.log(`round ${round - REPEAT} ${name}: metadata ${f.metaNs.map((t, i) => `${ms(t)} (${f.phases[i]!.map(ms).join(' + ')})`).join(', ')}`);
    }
  }
  const [first, reference] = servers as [string, string | undefined];
  if (reference === undefined) {
    jobs.forEach(([name], i) => console.log(`${name.padEnd(16)}  ${first} median ${median(pick(fioRounds, first).map((f) => f.iops[i]!)).toFixed(0)} IOPS`));
    const times = pick(metaRounds, first).map(metaOf);
    console.log(`${metaLabel}  ${first} median ${ms(median(times))}, best ${ms(Math.min(...times))} (${META_ROUNDS} guests x ${META_LOOPS} loops)`);
  } else compare(first, reference, fioRounds, metaRounds);
} finally {
  rmSync(dir, { recursive: true, force: true });
  rmSync(metaDir, { recursive: true, force: true });
}

/** Prints a workload's per-round ratios and their median, and returns the median. */
function report(name: string, mine: readonly number[], reference: readonly number[], perRound: readonly number[], format: (x: number) => string): number {
  const ratio = median(perRound);
  console.log(`${name.padEnd(16)}  ${format(median(mine)).padStart(9)}   ${format(median(reference)).padStart(14)}   ${ratio.toFixed(2)}   ${perRound.map((r) => r.toFixed(2)).join(' ')}`);
  return ratio;
}

function compare(mine: string, reference: string, fioRounds: ReadonlyArray<ReadonlyMap<string, Figures>>, metaRounds: ReadonlyArray<ReadonlyMap<string, Figures>>): void {
  const ratios: number[] = [];
  console.log(`paired rounds: one guest per round mounts both servers; ratio = ${mine}/${reference} throughput per round, the figure is their median`);
  console.log(`workload          ${mine.padStart(9)}   ${reference.padStart(14)}   ratio   per round`);
  jobs.forEach(([job], i) => {
    const a = pick(fioRounds, mine).map((f) => f.iops[i]!);
    const b = pick(fioRounds, reference).map((f) => f.iops[i]!);
    ratios.push(report(`${job} IOPS`.padEnd(16), a, b, a.map((x, r) => x / b[r]!), (x) => x.toFixed(0)));
  });
  const a = pick(metaRounds, mine).map(metaOf);
  const b = pick(metaRounds, reference).map(metaOf);
  // Time, so the throughput ratio is the reference's time over mine.
  ratios.push(report('metadata', a, b, a.map((x, r) => b[r]! / x), ms));
  console.log(`  ${metaLabel}: time per loop, host dir on ${process.env['BENCH_META_DIR'] ?? '/dev/shm'}, ${META_ROUNDS} guests x ${META_LOOPS} loops per server`);
  console.log(`  fio: ${SLICES} slices of ${sliceMs} ms per server, job and guest, in turns; ${REPEAT} guests`);
  const geomean = Math.exp(ratios.reduce((s, r) => s + Math.log(r), 0) / ratios.length);
  const what = reference === 'virtiofsd' ? 'novm vhost-user fs / C virtiofsd' : `${mine} / ${reference} (A/A: this host's noise)`;
  console.log(`bench:virtiofs ${what} (throughput, geometric mean of ${ratios.length} workloads, QEMU TCG guest): ${geomean.toFixed(2)}`);
}
