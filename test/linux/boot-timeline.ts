// Runs `novm boot` as a child process and timestamps every console line, so a Linux boot can be
// described as milestones ("first console line", "Brought up", "Run /init", ...) with elapsed
// times. Used by the minimal-kernel test and by measure-linux-boot.ts.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../guests/core/assemble.js';

export interface TimedLine {
  /** Milliseconds since `novm boot` was started. */
  readonly ms: number;
  readonly text: string;
}

export interface BootTimeline {
  readonly lines: readonly TimedLine[];
  /** The line that matched `stopAt`, when one did (the child was then stopped). */
  readonly stoppedAt?: TimedLine;
  /** novm's exit status (boot.ts: 0 power-off, 3 reboot, 4 triple fault, 5 error), null if killed. */
  readonly status: number | null;
  readonly timedOut: boolean;
  readonly ms: number;
}

export interface BootTimelineOptions {
  /** Arguments after `novm boot`. */
  readonly args: readonly string[];
  /** Hard deadline: the child is killed (SIGKILL after SIGTERM) when it passes. */
  readonly deadlineMs: number;
  /** Stop the VM at the first console line matching this. */
  readonly stopAt?: RegExp;
  /** Called for each line as it arrives (progress output). */
  readonly onLine?: (line: TimedLine) => void;
}

export const NOVM_CLI = join(repoRoot(), 'dist/src/cli/main.js');

export function bootTimeline(options: BootTimelineOptions): Promise<BootTimeline> {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, [NOVM_CLI, 'boot', ...options.args], { stdio: ['ignore', 'pipe', 'pipe'] });
    // Never leave a VM running behind a parent that ends first (a test timeout, Ctrl-C).
    const killChild = (): void => { child.kill('SIGKILL'); };
    process.once('exit', killChild);
    const lines: TimedLine[] = [];
    let stoppedAt: TimedLine | undefined;
    let timedOut = false;
    const pending = { stdout: '', stderr: '' };
    const take = (which: 'stdout' | 'stderr', chunk: string, flush: boolean): void => {
      let buffer = pending[which] + chunk;
      let newline: number;
      while ((newline = buffer.indexOf('\n')) >= 0 || (flush && buffer !== '')) {
        const end = newline >= 0 ? newline : buffer.length;
        const line = { ms: Date.now() - started, text: buffer.slice(0, end).replace(/\r$/, '') };
        buffer = buffer.slice(end + 1);
        lines.push(line);
        options.onLine?.(line);
        if (stoppedAt === undefined && options.stopAt?.test(line.text)) {
          stoppedAt = line;
          child.kill('SIGTERM');
        }
      }
      pending[which] = buffer;
    };
    child.stdout.setEncoding('utf8').on('data', (c: string) => take('stdout', c, false));
    child.stderr.setEncoding('utf8').on('data', (c: string) => take('stderr', c, false));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 5000).unref();
    }, options.deadlineMs);
    child.on('close', (status) => {
      clearTimeout(timer);
      process.removeListener('exit', killChild);
      take('stdout', '', true);
      take('stderr', '', true);
      resolve({ lines, ...(stoppedAt !== undefined ? { stoppedAt } : {}), status, timedOut, ms: Date.now() - started });
    });
  });
}

/** The first line matching `pattern` (with its time), or undefined. */
export function firstLine(timeline: BootTimeline, pattern: RegExp): TimedLine | undefined {
  return timeline.lines.find((l) => pattern.test(l.text));
}

/** Milestones of a Linux boot, in order; each maps to the first console line matching it. */
export const LINUX_MILESTONES: readonly { readonly name: string; readonly pattern: RegExp }[] = [
  { name: 'first console line', pattern: /^(\[\s*\d+\.\d+\] )?Linux version / },
  { name: 'x86/fpu', pattern: /x86\/fpu: / },
  { name: 'Calibrating / tsc', pattern: /(Calibrating delay|tsc: Detected|tsc: Fast TSC)/ },
  { name: 'Brought up', pattern: /smp: Brought up / },
  { name: 'Freeing unused kernel', pattern: /Freeing unused kernel/ },
  { name: 'Run /init', pattern: /Run \/init as init process/ },
  { name: 'after /init', pattern: /(segfault at|Kernel panic|Attempted to kill init|@@NOVM-BEGIN@@)/ },
];
