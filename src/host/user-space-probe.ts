// The host probe: boots a tiny guest that enters user mode and makes a system call into its
// own kernel (user-syscall-probe.S). On hosts with VMX/SVM it reports success; on nested PVM
// hosts the system call enters the guest kernel at user privilege (HOST-NOTES) and it fails.
// The answer is cached per kernel release, since it depends on the host's KVM only.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { CpuStartState, SegmentState } from '../boot/boot-plan.js';
import { Machine } from '../machine/machine.js';
import { MiB } from '../memory/address.js';
import { cpuFacts } from './host-facts.js';
import { USER_SYSCALL_PROBE_IMAGE } from './user-syscall-probe-image.js';

export interface UserSpaceProbeResult {
  readonly userSpaceWorks: boolean;
  /** What the guest reported, e.g. "system call entered the kernel at user privilege". */
  readonly detail: string;
  readonly kernelRelease: string;
  readonly milliseconds: number;
  readonly probedAt: string;
}

const PROBE_OK = 0x55;
const PROBE_WRONG_PRIVILEGE = 0x66;
const LOAD_ADDRESS = 0x100000;

function flat(selector: number, type: number): SegmentState {
  return { base: 0, limit: 0xffffffff, selector, type, present: true, dpl: 0, db: true, s: true, l: false, g: true };
}

function startState(): CpuStartState {
  return {
    mode: 'protected32', rip: LOAD_ADDRESS, rsp: 0x8000, rflags: 2, gpr: {}, cr0: 1, cr3: 0, cr4: 0, efer: 0,
    cs: flat(8, 0xb), ds: flat(0x10, 3), es: flat(0x10, 3), fs: flat(0x10, 3), gs: flat(0x10, 3), ss: flat(0x10, 3),
    tr: { base: 0, limit: 0xffff, selector: 0x18, type: 11, present: true, dpl: 0, db: false, s: false, l: false, g: false },
    ldt: { base: 0, limit: 0xffff, selector: 0, type: 2, present: true, dpl: 0, db: false, s: false, l: false, g: false },
    gdt: { base: 0, limit: 0 }, idt: { base: 0, limit: 0 },
  };
}

export function defaultProbeCachePath(): string {
  const base = process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache');
  return join(base, 'novm', 'host-probe.json');
}

/** Runs the probe guest now (about 0.1 s). */
export async function runUserSpaceProbe(timeoutMs = 10_000): Promise<UserSpaceProbeResult> {
  const started = Date.now();
  const machine = Machine.create({
    cpus: 1, memoryBytes: 16 * MiB,
    boot: {
      segments: [{ address: LOAD_ADDRESS, bytes: USER_SYSCALL_PROBE_IMAGE, what: 'user-space probe guest' }],
      cpu: startState(), loadedRange: { start: LOAD_ADDRESS, end: LOAD_ADDRESS + USER_SYSCALL_PROBE_IMAGE.length },
      description: 'user-space probe',
    },
  });
  machine.start();
  const timer = setTimeout(() => void machine.stop('probe timed out'), timeoutMs);
  const exit = await machine.exited;
  clearTimeout(timer);
  let userSpaceWorks = false;
  let detail: string;
  if (exit.kind === 'debug-exit' && exit.status === PROBE_OK) {
    userSpaceWorks = true;
    detail = 'a user-mode system call reached the guest kernel at ring 0';
  } else if (exit.kind === 'debug-exit' && exit.status === PROBE_WRONG_PRIVILEGE) {
    detail = 'a user-mode system call entered the guest kernel still at user privilege';
  } else if (exit.kind === 'quit') {
    detail = `the probe guest did not finish within ${timeoutMs} ms`;
  } else {
    detail = `the probe guest ended with ${exit.kind}: ${exit.detail}`;
  }
  return { userSpaceWorks, detail, kernelRelease: cpuFacts().kernelRelease, milliseconds: Date.now() - started, probedAt: new Date().toISOString() };
}

/** The cached answer for this kernel release, probing (and caching) when there is none. */
export async function userSpaceProbe(options: { cachePath?: string; refresh?: boolean } = {}): Promise<UserSpaceProbeResult & { cached: boolean }> {
  const path = options.cachePath ?? defaultProbeCachePath();
  const release = cpuFacts().kernelRelease;
  if (!options.refresh) {
    try {
      const cached = JSON.parse(readFileSync(path, 'utf8')) as UserSpaceProbeResult;
      if (cached.kernelRelease === release && typeof cached.userSpaceWorks === 'boolean') return { ...cached, cached: true };
    } catch {
      // No cache or an unreadable one: probe again.
    }
  }
  const result = await runUserSpaceProbe();
  try {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(`${path}.${process.pid}`, JSON.stringify(result, null, 2));
    renameSync(`${path}.${process.pid}`, path);
  } catch {
    // An unwritable cache only costs a re-probe next time.
  }
  return { ...result, cached: false };
}
