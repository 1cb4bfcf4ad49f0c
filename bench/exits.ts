// bench:exits — cost of a port-I/O exit and an MMIO exit handled by novm, against the same
// guest loop under a minimal C VMM on the same KVM (the floor), in one run.
// Per-exit cost = (time with N exits - time with 0 exits) / N, so start-up costs cancel out.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { Machine, type DeviceContext } from '../src/machine/machine.js';
import { MiB } from '../src/memory/address.js';
import { assembleGuest, flatGuestPlan, repoRoot } from '../test/guests/core/assemble.js';

const N = Number(process.env['NOVM_BENCH_EXITS'] ?? 200_000);
const ROUNDS = 3;

function buildReference(): string {
  const out = join(tmpdir(), 'novm-kvm-exit-loop');
  execFileSync('gcc', ['-O2', '-o', out, join(repoRoot(), 'bench/native/kvm-exit-loop.c')]);
  return out;
}

function runReference(binary: string, guest: string, pio: number, mmio: number): number {
  const out = execFileSync(binary, [guest, String(pio), String(mmio), '128'], { encoding: 'utf8' });
  const match = /run_ns=(\d+)/.exec(out);
  if (!match) throw new Error(`reference printed: ${out}`);
  return Number(match[1]);
}

async function runNovm(pio: number, mmio: number, remote: boolean): Promise<number> {
  const machine = Machine.create({
    cpus: 1, memoryBytes: 128 * MiB, boot: flatGuestPlan('exit-loop', { rcx: pio, rbx: mmio }),
    localDevices: remote ? [] : [{ kind: 'sink', space: 'pio', base: 0x510, size: 1 }, { kind: 'sink', space: 'mmio', base: 0xd000_0000, size: 0x1000 }],
    ...(remote ? {
      attachDevices: (ctx: DeviceContext) => {
        const sink = { read(_o: number, d: Uint8Array) { d.fill(0); }, write() {} };
        ctx.pio.insert(0x510, 1, sink);
        ctx.mmio.insert(0xd000_0000, 0x1000, sink);
      },
    } : {}),
  });
  const start = process.hrtime.bigint();
  machine.start();
  const exit = await machine.exited;
  const elapsed = Number(process.hrtime.bigint() - start);
  if (exit.kind !== 'debug-exit' || exit.status !== 0) throw new Error(`guest ended with ${exit.kind}: ${exit.detail}`);
  return elapsed;
}

function best(values: number[]): number {
  return Math.min(...values);
}

async function main(): Promise<void> {
  const reference = buildReference();
  const guest = assembleGuest('exit-loop');
  const results: Record<string, { ref: number; novm: number; remote: number }> = {};
  for (const [name, pio, mmio] of [['pio', N, 0], ['mmio', 0, N]] as const) {
    const ref: number[] = [], novm: number[] = [], remote: number[] = [];
    const ref0: number[] = [], novm0: number[] = [], remote0: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      ref0.push(runReference(reference, guest, 0, 0));
      ref.push(runReference(reference, guest, pio, mmio));
      novm0.push(await runNovm(0, 0, false));
      novm.push(await runNovm(pio, mmio, false));
      remote0.push(await runNovm(0, 0, true));
      remote.push(await runNovm(pio, mmio, true));
    }
    results[name] = {
      ref: (best(ref) - best(ref0)) / N,
      novm: (best(novm) - best(novm0)) / N,
      remote: (best(remote) - best(remote0)) / N,
    };
  }
  for (const [name, r] of Object.entries(results)) {
    console.log(`${name}: C floor ${(r.ref / 1000).toFixed(2)} us/exit, novm (device in the vCPU thread) ${(r.novm / 1000).toFixed(2)} us/exit, novm (device on the main thread) ${(r.remote / 1000).toFixed(2)} us/exit`);
  }
  const pio = results['pio']!, mmio = results['mmio']!;
  console.log(`ratio novm/C per exit: pio ${(pio.novm / pio.ref).toFixed(3)}x, mmio ${(mmio.novm / mmio.ref).toFixed(3)}x (target <= 1.2x)`);
}

await main();
