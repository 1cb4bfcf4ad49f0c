// `novm fs mount [--read VM=HOST]... [--write VM=HOST]... MOUNTPOINT`: serve a union of host
// directory trees at a host mount point over /dev/fuse until unmounted or interrupted.
import { spawn } from 'node:child_process';
import type { Command } from 'commander';
import { InputError } from '../../common/errors.js';
import { checkMountPoint, configFromFlags, DevFuseServer, FuseHandler, raiseFdLimit, UnionFs } from '../../fs/index.js';

const collect = (value: string, previous: string[]) => [...previous, value];
const THREADPOOL_SIZE = 32;

export function register(program: Command): void {
  const fs = program.command('fs').description('the union file system of host directory trees');
  fs.command('mount')
    .description('serve a union of host directories at MOUNTPOINT over /dev/fuse')
    .argument('<mountpoint>', 'host directory to mount on')
    .option('--read <VM=HOST>', 'read-only layer HOST at VM path (repeatable; later wins)', collect, [])
    .option('--write <VM=HOST>', 'writable layer HOST at VM path (at most one per VM path)', collect, [])
    .option('--cache-timeout <seconds>', 'how long the kernel may cache names and attributes', '1')
    .option('--concurrency <n>', 'requests served concurrently', '8')
    .action(async (mountPoint: string, opts: { read: string[]; write: string[]; cacheTimeout: string; concurrency: string }) => {
      const concurrency = Number(opts.concurrency);
      const timeout = Number(opts.cacheTimeout);
      if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) throw new InputError('--concurrency must be an integer from 1 to 64');
      if (!Number.isFinite(timeout) || timeout < 0) throw new InputError('--cache-timeout must be a number of seconds >= 0');
      // Each outstanding /dev/fuse read holds a thread-pool thread; Node sizes its pool once, at
      // start-up, from UV_THREADPOOL_SIZE, so a process without it re-runs itself with it set.
      if (Number(process.env['UV_THREADPOOL_SIZE'] ?? 4) < concurrency + 4) return reexec();
      const config = configFromFlags(opts.read, opts.write);
      const union = new UnionFs({ ...config, cacheTimeoutSeconds: timeout });
      const real = checkMountPoint(mountPoint, union);
      raiseFdLimit();
      const handler = new FuseHandler(union, { cacheTimeoutSeconds: timeout });
      const server = new DevFuseServer(handler, real, { concurrency });
      server.mount();
      process.stderr.write(`novm fs: serving ${real} (pid ${process.pid})\n`);
      let signals = 0;
      const stop = () => {
        signals++;
        void server.unmount(signals > 1).then((ok) => {
          if (!ok && signals === 1) process.stderr.write('novm fs: mount busy; interrupt again to detach it lazily\n');
        });
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
      process.on('SIGHUP', stop);
      await server.done;
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      process.off('SIGHUP', stop);
    });
}

function reexec(): Promise<void> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
      stdio: 'inherit',
      env: { ...process.env, UV_THREADPOOL_SIZE: String(THREADPOOL_SIZE) },
    });
    const forward = (signal: NodeJS.Signals) => () => child.kill(signal);
    const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((s) => [s, forward(s)] as const);
    for (const [s, h] of handlers) process.on(s, h);
    child.on('exit', (code, signal) => {
      for (const [s, h] of handlers) process.off(s, h);
      process.exitCode = code ?? (signal ? 128 + 1 : 1);
      resolve();
    });
  });
}
