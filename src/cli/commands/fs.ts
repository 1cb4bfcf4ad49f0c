// `novm fs mount [--read VM=HOST]... [--write VM=HOST]... MOUNTPOINT`: serve a union of host
// directory trees at a host mount point over /dev/fuse until unmounted or interrupted.
import type { Command } from 'commander';
import { InputError } from '../../common/errors.js';
import { checkMountPoint, configFromFlags, DevFuseServer, raiseFdLimit, resolveConfig } from '../../fs/index.js';

const collect = (value: string, previous: string[]) => [...previous, value];

interface MountOptions {
  read: string[];
  write: string[];
  cacheTimeout: string;
  ioThreads: string;
  passthrough: boolean;
}

export function register(program: Command): void {
  const fs = program.command('fs').description('the union file system of host directory trees');
  fs.command('mount')
    .description('serve a union of host directories at MOUNTPOINT over /dev/fuse until unmounted or interrupted')
    .argument('<mountpoint>', 'host directory to mount on')
    .option('--read <VM=HOST>', 'read-only layer HOST at VM path (repeatable; a later one wins)', collect, [])
    .option('--write <VM=HOST>', 'writable layer HOST at VM path (at most one per VM path)', collect, [])
    .option('--cache-timeout <seconds>', 'how long the kernel may cache names, attributes and data (layers must not change behind the server)', '60')
    .option('--io-threads <n>', 'threads for blocking data work (reads that miss the cache, large writes, fsync)', '4')
    .option('--no-passthrough', 'serve all file data through novm, never through FUSE passthrough (Linux 6.9+, needs CAP_SYS_ADMIN)')
    .action(async (mountPoint: string, opts: MountOptions) => {
      const ioWorkers = Number(opts.ioThreads);
      const timeout = Number(opts.cacheTimeout);
      if (!Number.isInteger(ioWorkers) || ioWorkers < 1 || ioWorkers > 64) throw new InputError('--io-threads must be an integer from 1 to 64');
      if (!Number.isFinite(timeout) || timeout < 0 || timeout > 86400) throw new InputError('--cache-timeout must be a number of seconds from 0 to 86400');
      const config = { ...configFromFlags(opts.read, opts.write), cacheTimeoutSeconds: timeout };
      const real = checkMountPoint(mountPoint, resolveConfig(config));
      raiseFdLimit();
      const server = new DevFuseServer(config, real, { ioWorkers, passthrough: opts.passthrough });
      server.mount();
      process.stderr.write(`novm fs: serving ${real} (pid ${process.pid})\n`);
      let signals = 0;
      const stop = () => {
        signals++;
        void server.unmount(signals > 1).then((ok) => {
          if (!ok && signals === 1) process.stderr.write('novm fs: mount busy; interrupt again to detach it lazily\n');
        });
      };
      // SIGUSR1 prints the engine's sizes: they stay flat when the client forgets what it looked up.
      const stats = () => {
        const s = server.stats();
        process.stderr.write(`novm fs: stats nodes=${s.nodes} fds=${s.fds} files=${s.files} requests=${s.requests} errors=${s.errors} unexpected=${s.unexpected} backing=${s.backingFiles} rss=${process.memoryUsage().rss}\n`);
      };
      const signalsHandled = [['SIGINT', stop], ['SIGTERM', stop], ['SIGHUP', stop], ['SIGUSR1', stats]] as const;
      for (const [s, h] of signalsHandled) process.on(s, h);
      await server.done;
      for (const [s, h] of signalsHandled) process.off(s, h);
    });
}
