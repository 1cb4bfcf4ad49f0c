// Starts `novm fs mount` as a child process for tests and benchmarks, waits until the mount is in
// /proc/self/mountinfo, and always unmounts again (a stale mount would break later runs).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const CLI = resolve('dist/src/cli/main.js');
/** The fs command alone (same code path), immune to other commands' transient breakage. */
export const FS_CLI = resolve('dist/test/fs/fs-cli.js');

export function fuseUnavailable(): string | false {
  if (!existsSync('/dev/fuse')) return 'no /dev/fuse on this machine';
  if (process.getuid?.() !== 0) return 'mounting over /dev/fuse with mount -i needs root';
  return false;
}

export function toolMissing(tool: string): string | false {
  const r = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' });
  return r.status === 0 ? false : `${tool} is not installed (scripts/setup.sh installs it)`;
}

export function isMounted(path: string): boolean {
  const info = readFileSync('/proc/self/mountinfo', 'utf8');
  return info.split('\n').some((line) => line.split(' ')[4] === path);
}

export function scratchDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `novm-${prefix}-`));
}

export interface RunningMount {
  readonly mountPoint: string;
  readonly child: ChildProcess;
  stderr(): string;
  /** Sends a signal and resolves with the exit code once the server exits. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Prints and returns the server's stats line (SIGUSR1). */
  stats(): Promise<Record<string, number>>;
}

export async function startMount(args: readonly string[], mountPoint: string, env: Record<string, string> = {}): Promise<RunningMount> {
  mkdirSync(mountPoint, { recursive: true });
  const child = spawn(process.execPath, [FS_CLI, 'fs', 'mount', ...args, mountPoint], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, UV_THREADPOOL_SIZE: '32', ...env },
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  const deadline = Date.now() + 15_000;
  const real = resolve(mountPoint);
  while (!isMounted(real)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`novm fs mount did not come up: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    mountPoint: real,
    child,
    stderr: () => stderr,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      const code = await exited;
      clearTimeout(timer);
      forceUnmount(real);
      return code;
    },
    async stats() {
      const before = stderr.length;
      child.kill('SIGUSR1');
      for (let i = 0; i < 100; i++) {
        const m = /stats (.*)\n/.exec(stderr.slice(before));
        if (m) return Object.fromEntries(m[1]!.split(' ').map((kv) => kv.split('=')).map(([k, v]) => [k!, Number(v)]));
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error('no stats line');
    },
  };
}

/** Removes a mount left behind by a killed server (the connection is dead, umount succeeds). */
export function forceUnmount(path: string): void {
  if (isMounted(path)) spawnSync('umount', [path]);
  if (isMounted(path)) spawnSync('umount', ['-l', path]);
}

export function cleanup(dir: string): void {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const mp = line.split(' ')[4];
    if (mp && mp.startsWith(dir + '/')) forceUnmount(mp);
  }
  rmSync(dir, { recursive: true, force: true });
}

/** Runs a shell command with a timeout; resolves with its exit code and output. */
export function sh(command: string, timeoutMs = 120_000, cwd?: string): Promise<{ code: number | null; out: string }> {
  return new Promise((res) => {
    const child = spawn('sh', ['-c', command], { stdio: ['ignore', 'pipe', 'pipe'], ...(cwd ? { cwd } : {}) });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      res({ code, out });
    });
  });
}
