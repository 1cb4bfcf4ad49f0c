// The host probe: boots a tiny guest that enters user mode and makes a system call into its
// own kernel (user-syscall-probe.S). On hosts with VMX/SVM it reports success; on nested PVM
// hosts the system call enters the guest kernel at user privilege (HOST-NOTES) and it fails.
// The answer is cached per kernel release, since it depends on the host's KVM only.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { planFlatBinary } from '../boot/flat-binary.js';
import { Machine } from '../machine/machine.js';
import { MiB } from '../memory/address.js';
import { cpuFacts } from './host-facts.js';
import { USER_SYSCALL_PROBE_IMAGE } from './user-syscall-probe-image.js';

/** Bumped whenever the probe guest or its reading changes: older cached answers are ignored. */
const PROBE_VERSION = 2;

export interface UserSpaceProbeResult {
  readonly probeVersion: number;
  readonly userSpaceWorks: boolean;
  /** What the guest reported, e.g. "system call entered the kernel at user privilege". */
  readonly detail: string;
  readonly kernelRelease: string;
  readonly milliseconds: number;
  readonly probedAt: string;
}

/** The guest stores 0x50 + the privilege level of its system-call entry here (not RAM). */
const REPORT_ADDRESS = 0x3000_0000;
const REPORT_RING0 = 0x50;
const REPORT_RING3 = 0x53;
const REPORT_RAX_LOST = 0x5f;
const LOAD_ADDRESS = 0x100000;

export function defaultProbeCachePath(): string {
  const base = process.env['XDG_CACHE_HOME'] ?? join(homedir(), '.cache');
  return join(base, 'novm', 'host-probe.json');
}

/** Runs the probe guest now (about 0.1 s). */
export async function runUserSpaceProbe(timeoutMs = 10_000): Promise<UserSpaceProbeResult> {
  const started = Date.now();
  let report: number | undefined;
  const machine = Machine.create({
    cpus: 1, memoryBytes: 16 * MiB,
    boot: planFlatBinary({ bytes: USER_SYSCALL_PROBE_IMAGE, loadAddress: LOAD_ADDRESS, what: 'user-space probe guest' }),
    attachDevices: (ctx) => {
      ctx.mmio.insert(REPORT_ADDRESS, 4, {
        read: (_offset, data) => data.fill(0),
        write: (_offset, data) => {
          if (report === undefined) report = data[0]!;
          ctx.end('quit', 'the probe guest reported');
        },
      });
    },
  });
  machine.start();
  const timer = setTimeout(() => void machine.stop('probe timed out'), timeoutMs);
  const exit = await machine.exited;
  clearTimeout(timer);
  let userSpaceWorks = false;
  let detail: string;
  if (report === REPORT_RING0) {
    userSpaceWorks = true;
    detail = 'a user-mode system call reached the guest kernel at ring 0';
  } else if (report === REPORT_RING3) {
    detail = 'a user-mode system call entered the guest kernel still at user privilege';
  } else if (report === REPORT_RAX_LOST) {
    detail = 'a user-mode system call reached the guest kernel with its registers changed';
  } else if (report !== undefined) {
    detail = `the probe guest reported 0x${report.toString(16)}`;
  } else if (exit.kind === 'quit') {
    detail = `the probe guest did not finish within ${timeoutMs} ms`;
  } else {
    detail = `the probe guest ended with ${exit.kind}: ${exit.detail}`;
  }
  return { probeVersion: PROBE_VERSION, userSpaceWorks, detail, kernelRelease: cpuFacts().kernelRelease, milliseconds: Date.now() - started, probedAt: new Date().toISOString() };
}

/** The cached answer for this kernel release, probing (and caching) when there is none. */
export async function userSpaceProbe(options: { cachePath?: string; refresh?: boolean } = {}): Promise<UserSpaceProbeResult & { cached: boolean }> {
  const path = options.cachePath ?? defaultProbeCachePath();
  const release = cpuFacts().kernelRelease;
  if (!options.refresh) {
    try {
      const cached = JSON.parse(readFileSync(path, 'utf8')) as UserSpaceProbeResult;
      if (cached.probeVersion === PROBE_VERSION && cached.kernelRelease === release && typeof cached.userSpaceWorks === 'boolean') return { ...cached, cached: true };
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
