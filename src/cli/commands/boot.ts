// `novm boot`: runs a kernel (Linux ELF vmlinux or bzImage, multiboot v1/v2) with the serial
// console on the terminal (or, with --console virtio, a virtio-console port; the serial line's
// output still reaches the terminal for early boot logs). The exit status says how the guest ended:
//   0 power-off (or quit with Ctrl-A x), 3 reboot, 4 triple fault, 5 error (vCPU state on
//   stderr), the byte itself for novm's debug-exit port, 2 bad input.
import { readdirSync } from 'node:fs';
import type { Command } from 'commander';
import { InputError } from '../../common/errors.js';
import { parseCount, parseSize } from '../parse-size.js';

interface BootFlags {
  kernel?: string;
  initrd?: string;
  cmdline?: string;
  module: string[];
  cpus: string;
  memory: string;
  profile: 'auto' | 'default' | 'pvm';
  timeout?: string;
  disk: string[];
  rng?: boolean;
  console: string;
  read: string[];
  write: string[];
  verbose?: boolean;
}

/** The host's installed distribution kernel: the embedded default that needs no input. */
function defaultKernel(): string {
  let names: string[] = [];
  try {
    names = readdirSync('/boot').filter((n) => n.startsWith('vmlinuz-'));
  } catch {
    // no /boot
  }
  const newest = names.sort((a, b) => b.localeCompare(a, undefined, { numeric: true }))[0];
  if (newest === undefined) throw new InputError('--kernel: no kernel given and none installed in /boot (install linux-image-amd64)');
  return `/boot/${newest}`;
}

export function register(program: Command): void {
  program.command('boot')
    .description('boot a kernel with the serial console on this terminal (Ctrl-A x quits)')
    .option('--kernel <file>', 'Linux vmlinux or bzImage, or a multiboot kernel (default: the newest /boot/vmlinuz-*)')
    .option('--initrd <file>', 'initial ramdisk (Linux) or first module (multiboot)')
    .option('--cmdline <string>', 'kernel command line')
    .option('--module <file>', 'multiboot module, "FILE" or "FILE ARGS" (repeatable)', (v: string, all: string[]) => [...all, v], [] as string[])
    .option('--cpus <n>', 'number of vCPUs', '1')
    .option('--memory <size>', 'guest RAM (e.g. 512M, 2G)', '256M')
    .option('--profile <name>', 'host compatibility profile: auto, default or pvm', 'auto')
    .option('--disk <file[,ro]>', 'a raw disk image as a virtio-blk device; ",ro" for read-only (repeatable)', (v: string, all: string[]) => [...all, v], [] as string[])
    .option('--rng', 'a virtio-rng device fed by the host\'s getrandom')
    .option('--console <kind>', 'the terminal\'s console: serial, or virtio (a multiport virtio-console: port 0 is hvc0, console=hvc0 is appended; port 1 is the agent port; Ctrl-A b sends the hvc SysRq prefix ^O)', 'serial')
    .option('--read <VM=HOST>', 'a read-only host directory in the virtio-fs union (repeatable; later wins)', (v: string, all: string[]) => [...all, v], [] as string[])
    .option('--write <VM=HOST>', 'the writable host directory for a VM path in the union', (v: string, all: string[]) => [...all, v], [] as string[])
    .option('--timeout <seconds>', 'stop the VM after this many seconds')
    .option('--verbose', 'describe the boot plan on stderr')
    .action(async (flags: BootFlags) => {
      const cpus = parseCount('--cpus', flags.cpus);
      const memoryBytes = parseSize('--memory', flags.memory);
      if (!['auto', 'default', 'pvm'].includes(flags.profile)) throw new InputError(`--profile ${flags.profile}: must be auto, default or pvm`);
      const timeout = flags.timeout === undefined ? undefined : parseCount('--timeout', flags.timeout);
      if (flags.console !== 'serial' && flags.console !== 'virtio') throw new InputError(`--console ${flags.console}: must be serial or virtio`);
      const virtioConsole = flags.console === 'virtio';
      // Loaded here, not at the top: every novm command pays for the modules it imports.
      const { createBootVm } = await import('../../machine/boot-vm.js');
      const { processStatus } = await import('../../machine/machine-exit.js');
      const { TerminalConsole } = await import('../../platform/serial/terminal-console.js');
      let stopMachine = (): void => {};
      const terminal = new TerminalConsole({ onQuit: () => stopMachine() });
      const vm = await createBootVm({
        kernelPath: flags.kernel ?? defaultKernel(),
        ...(flags.initrd !== undefined ? { initrdPath: flags.initrd } : {}),
        ...(flags.cmdline !== undefined ? { cmdline: flags.cmdline } : {}),
        modules: flags.module.map((m) => {
          const space = m.indexOf(' ');
          return space < 0 ? { path: m } : { path: m.slice(0, space), cmdline: m };
        }),
        cpus, memoryBytes, profile: flags.profile,
        disks: flags.disk.map((d) => (d.endsWith(',ro') ? { path: d.slice(0, -3), readonly: true } : { path: d, readonly: false })),
        rng: flags.rng === true,
        virtioConsole,
        ...(flags.read.length + flags.write.length > 0 ? { fs: { read: flags.read, write: flags.write } } : {}),
        serialOutput: terminal.writeByte,
        onSerialInputSpace: terminal.inputSpaceAvailable,
        warn: (message) => process.stderr.write(`novm: ${message}\n`),
      });
      if (flags.verbose) process.stderr.write(`novm: ${vm.plan.description}; profile ${vm.profile.name}\n`);
      const { machine } = vm;
      stopMachine = () => void machine.stop('quit from the console (Ctrl-A x)');
      let onTerminalResize: (() => void) | undefined;
      if (vm.console !== undefined) {
        const { CONSOLE_PORT_ID, portInput } = await import('../../virtio/devices/console/vm-console.js');
        const consoleDevice = vm.console;
        const port = consoleDevice.ports[CONSOLE_PORT_ID]!;
        port.onData = (data) => {
          for (const byte of data) terminal.writeByte(byte);
        };
        if (process.stdout.isTTY) {
          onTerminalResize = () => consoleDevice.resize(process.stdout.columns, process.stdout.rows);
          onTerminalResize();
          process.stdout.on('resize', onTerminalResize);
        }
        machine.start();
        terminal.start(portInput(port, terminal.inputSpaceAvailable));
      } else {
        machine.start();
        terminal.start(vm.platform().uart);
      }
      const timer = timeout === undefined ? undefined : setTimeout(() => void machine.stop(`timeout after ${timeout} s`), timeout * 1000);
      const exit = await machine.exited;
      if (timer) clearTimeout(timer);
      if (onTerminalResize) process.stdout.removeListener('resize', onTerminalResize);
      terminal.stop();
      const status = processStatus(exit);
      if (exit.kind !== 'poweroff' || flags.verbose) process.stderr.write(`\nnovm: ${exit.kind}: ${exit.detail}\n`);
      if (exit.state) process.stderr.write(`${exit.state}\n`);
      process.exitCode = status;
    });
}
