// `novm vhost-user DEVICE --socket PATH [options]`: serve one of novm's device models to a
// vhost-user front end (QEMU, Cloud Hypervisor, novm itself) on a Unix socket.
import type { Command } from 'commander';
import { InputError } from '../../common/errors.js';
import { VhostUserServer } from '../../vhost-user/server.js';
import { createBackendDevice, BACKEND_DEVICE_KINDS, type BackendDeviceOptions } from '../../vhost-user/devices.js';

export function register(program: Command): void {
  program
    .command('vhost-user')
    .description('serve a virtio device to a vhost-user front end (e.g. QEMU -chardev socket + vhost-user-*-pci)')
    .argument('<device>', `device kind: ${BACKEND_DEVICE_KINDS.join(', ')}`)
    .requiredOption('--socket <path>', 'Unix socket to listen on')
    .option('--image <file>', 'blk: raw disk image')
    .option('--readonly', 'blk: refuse writes')
    .option('--serial <id>', 'blk: serial number reported by GET_ID')
    .option('--queues <n>', 'blk/fs: number of request queues', '1')
    .option('--tag <tag>', 'fs: mount tag', 'novm')
    .option('--read <VM=HOST...>', 'fs: read-only layer(s)', collect, [] as string[])
    .option('--write <VM=HOST>', 'fs: writable layer (at most one per VM path)', collect, [] as string[])
    .option('--keep-listening', 'serve front ends one after another instead of exiting after the first')
    .action(async (kind: string, opts: Record<string, unknown>) => {
      const queues = Number(opts['queues']);
      if (!Number.isInteger(queues) || queues < 1 || queues > 64) throw new InputError(`--queues must be an integer in [1, 64], got ${String(opts['queues'])}`);
      const options: BackendDeviceOptions = {
        image: opts['image'] as string | undefined,
        readonly: opts['readonly'] === true,
        serial: opts['serial'] as string | undefined,
        queues,
        tag: opts['tag'] as string,
        read: opts['read'] as string[],
        write: opts['write'] as string[],
      };
      const device = await createBackendDevice(kind, options);
      const server = new VhostUserServer(device.model, { socketPath: opts['socket'] as string, keepListening: opts['keepListening'] === true });
      const stop = (): void => server.close();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      try {
        await server.run();
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        await device.close();
      }
    });
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}
