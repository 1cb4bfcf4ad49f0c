// `novm vhost-user DEVICE --socket PATH [options]`: serve one of novm's device models to a
// vhost-user front end (QEMU, Cloud Hypervisor, novm itself) on a Unix socket.
import type { Command } from 'commander';
import { InputError } from '../../common/errors.js';
import { VhostUserServer } from '../../vhost-user/server.js';
import { createBackendDevice, BACKEND_DEVICE_KINDS, type BackendDeviceOptions, type OpenedDevice } from '../../vhost-user/devices.js';
import { FdPoller } from '../../vhost-user/fd-poller.js';
import { DEFAULT_POLL_US } from '../../vhost-user/queue-thread.js';

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
    .option('--tap <name>', 'net: tap interface to create or attach to (default: the kernel picks tapN)')
    .option('--cid <n>', 'vsock: guest context ID', '3')
    .option('--uds <path>', 'vsock: Unix socket standing for the guest (guest port N connects to PATH_N)')
    .option('--packed', 'offer packed virtqueues (VIRTIO_F_RING_PACKED) too; QEMU needs packed=on on the device')
    .option('--poll-us <us>', `blk/fs: busy polling, the longest time the queue thread watches its rings for the next request before it sleeps (adapts to the guest; 0: off)`, String(DEFAULT_POLL_US))
    .option('--stats', 'print the device counters when the front end leaves')
    .option('--keep-listening', 'serve front ends one after another instead of exiting after the first')
    .action(async (kind: string, opts: Record<string, unknown>) => {
      const queues = Number(opts['queues']);
      if (!Number.isInteger(queues) || queues < 1 || queues > 64) throw new InputError(`--queues must be an integer in [1, 64], got ${String(opts['queues'])}`);
      const pollUs = Number(opts['pollUs']);
      if (!Number.isInteger(pollUs) || pollUs < 0 || pollUs > 100_000) throw new InputError(`--poll-us must be an integer in [0, 100000], got ${String(opts['pollUs'])}`);
      const options: BackendDeviceOptions = {
        image: opts['image'] as string | undefined,
        readonly: opts['readonly'] === true,
        serial: opts['serial'] as string | undefined,
        queues,
        tag: opts['tag'] as string,
        read: opts['read'] as string[],
        write: opts['write'] as string[],
        tap: opts['tap'] as string | undefined,
        cid: Number(opts['cid']),
        uds: opts['uds'] as string | undefined,
        packed: opts['packed'] === true,
        pollUs,
      };
      const poller = new FdPoller();
      let device: OpenedDevice;
      try {
        device = await createBackendDevice(kind, options, poller);
      } catch (error) {
        await poller.stop();
        throw error;
      }
      let server: VhostUserServer;
      try {
        server = new VhostUserServer(device.model, { socketPath: opts['socket'] as string, keepListening: opts['keepListening'] === true, poller });
      } catch (error) {
        if (opts['stats'] === true && device.summary !== undefined) process.stderr.write(`${device.summary()}\n`);
        await device.close();
        await poller.stop();
        throw error;
      }
      const stop = (): void => server.close();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      try {
        await server.run();
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        if (opts['stats'] === true && device.summary !== undefined) process.stderr.write(`${device.summary()}\n`);
        await device.close();
        await poller.stop();
      }
    });
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}
