// bench:blk — the same guest (QEMU TCG, Debian's kernel) and the same raw image, served once by
// novm's vhost-user-blk back end and once by QEMU's built-in virtio-blk; fio runs in the guest.
// TCG makes absolute numbers small; the ratio measured side by side in one run is the figure.
// Both back ends go through the host page cache (QEMU: cache=writeback), so the comparison is
// of the device paths, not of O_DIRECT against buffered I/O. Under TCG, QEMU's built-in device
// runs on the same thread as the emulated CPU, while a vhost-user back end is another process:
// that, more than JavaScript against C, is what the ratio shows.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FIO, buildInitramfs, fioCommand, parseFio, qemuUnavailableReason, runGuest, type FioResult } from '../test/qemu/harness.js';

const reason = qemuUnavailableReason();
if (reason !== undefined) {
  console.log(`bench:blk skipped: ${reason}`);
  process.exit(0);
}

const RUNTIME = Number(process.env['BENCH_RUNTIME'] ?? 8);
// BENCH_NOVM_ARGS adds flags to novm's back end (e.g. `--poll-us 0`, `--stats`).
const novmArgs = process.env['BENCH_NOVM_ARGS']?.split(' ').filter((a) => a !== '') ?? [];
const jobs: Array<[string, string]> = [
  ['randread-4k', `--filename=/dev/vda --ioengine=libaio --direct=1 --rw=randread --bs=4k --iodepth=16 --size=192m --time_based --runtime=${RUNTIME}`],
  ['randwrite-4k', `--filename=/dev/vda --ioengine=libaio --direct=1 --rw=randwrite --bs=4k --iodepth=16 --size=192m --time_based --runtime=${RUNTIME}`],
  ['seqread-1m', `--filename=/dev/vda --ioengine=libaio --direct=1 --rw=read --bs=1m --iodepth=4 --size=192m --time_based --runtime=${RUNTIME}`],
  ['seqwrite-1m', `--filename=/dev/vda --ioengine=libaio --direct=1 --rw=write --bs=1m --iodepth=4 --size=192m --time_based --runtime=${RUNTIME}`],
];

const dir = mkdtempSync(join(tmpdir(), 'novm-bench-blk-'));
const image = join(dir, 'disk.img');
writeFileSync(image, Buffer.alloc(256 << 20, 0x11));
const initramfs = buildInitramfs({ modules: ['virtio_pci', 'virtio_blk'], binaries: [FIO], script: jobs.map(([n, a]) => fioCommand(n, a)).join('\n') });

async function measure(label: string, qemuArgs: string[]): Promise<FioResult[]> {
  const run = await runGuest({ initramfs, qemuArgs, memoryMiB: 1024, timeoutMs: (jobs.length * (RUNTIME + 5) + 60) * 1000 });
  const results = parseFio(run.output ?? '');
  if (results.length !== jobs.length) throw new Error(`${label}: fio results missing\n${run.transcript.slice(-3000)}`);
  return results;
}

try {
  const socket = join(dir, 'blk.sock');
  const backend = spawn(process.execPath, [join(process.cwd(), 'dist/src/cli/main.js'), 'vhost-user', 'blk', '--image', image, '--socket', socket, ...novmArgs], { stdio: ['ignore', 'inherit', 'inherit'] });
  for (let i = 0; i < 200 && !existsSync(socket); i++) await sleep(25);
  const novm = await measure('novm', ['-chardev', `socket,id=b,path=${socket}`, '-device', 'vhost-user-blk-pci,chardev=b,num-queues=1']);
  backend.kill();
  const qemu = await measure('qemu', ['-drive', `file=${image},if=none,id=d,format=raw,cache=writeback,aio=threads`, '-device', 'virtio-blk-pci,drive=d']);
  console.log('workload          novm IOPS   qemu IOPS   novm MiB/s  qemu MiB/s  ratio');
  const ratios: number[] = [];
  for (let i = 0; i < jobs.length; i++) {
    const a = novm[i]!;
    const b = qemu[i]!;
    const ia = a.readIops + a.writeIops;
    const ib = b.readIops + b.writeIops;
    const ratio = ia / ib;
    ratios.push(ratio);
    const mib = (r: FioResult) => ((r.readKiBps + r.writeKiBps) / 1024).toFixed(1);
    console.log(`${a.name.padEnd(16)}  ${ia.toFixed(0).padStart(9)}   ${ib.toFixed(0).padStart(9)}   ${mib(a).padStart(9)}   ${mib(b).padStart(9)}   ${ratio.toFixed(2)}`);
  }
  const geomean = Math.exp(ratios.reduce((s, r) => s + Math.log(r), 0) / ratios.length);
  console.log(`bench:blk novm vhost-user-blk / QEMU virtio-blk (IOPS, geometric mean of ${ratios.length} fio workloads, QEMU TCG guest): ${geomean.toFixed(2)}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
