// Builds a bootable VM from kernel files: the PC platform, the boot plan from the boot layer,
// the compatibility profile for the host, and the machine. Used by `novm boot`.
import { detectKernelFormat, loadKernel, readInput, type ModuleSpec } from '../boot/load-kernel.js';
import type { BootPlan } from '../boot/boot-plan.js';
import { InputError } from '../common/errors.js';
import { cpuFacts } from '../host/host-facts.js';
import { ramLayout } from '../memory/layout.js';
import { cpuidForVcpu } from '../platform/cpuid.js';
import { DEFAULT_PROFILE, PVM_PROFILE, type CompatProfile } from './compat-profile.js';
import { FileBlockBackend } from '../virtio/devices/blk/block-backend.js';
import { BlkDevice } from '../virtio/devices/blk/blk-device.js';
import { RngDevice } from '../virtio/devices/rng/rng-device.js';
import { FsDevice } from '../virtio/devices/fs/fs-device.js';
import type { ConsoleDevice } from '../virtio/devices/console/console-device.js';
import { createVmConsole } from '../virtio/devices/console/vm-console.js';
import { configFromFlags, FuseHandler, UnionFs } from '../fs/index.js';
import { Machine, MAX_VCPUS } from './machine.js';
import { VirtioWiring } from './virtio-attach.js';
import { attachPcPlatform, pcPlatformLayout, type PcPlatform } from './pc-platform.js';

export const DEFAULT_LINUX_CMDLINE = 'console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1';
/** The virtio-fs tag of the union, and how a Linux guest mounts it as its root. */
export const FS_TAG = 'novm';
export const FS_ROOT_CMDLINE = `rootfstype=virtiofs root=${FS_TAG} rw`;
/**
 * The default Linux command line with the virtio console: no serial console (every line would
 * reach the terminal twice), but earlyprintk keeps the serial line for early boot logs until
 * hvc0 registers (the kernel then retires the boot console).
 */
export const DEFAULT_VIRTIO_CONSOLE_CMDLINE = 'earlyprintk=serial,ttyS0,115200 panic=-1';

/** Appends console=hvc0 (last, so /dev/console is hvc0) unless the line names an hvc console. */
export function withHvcConsole(cmdline: string): string {
  return /(^|\s)console=hvc/.test(cmdline) ? cmdline : [cmdline, 'console=hvc0'].filter((s) => s !== '').join(' ');
}

export interface BootVmOptions {
  readonly kernelPath: string;
  readonly initrdPath?: string;
  /** Kernel command line; for Linux the default is DEFAULT_LINUX_CMDLINE. */
  readonly cmdline?: string;
  readonly modules?: readonly ModuleSpec[];
  readonly cpus: number;
  readonly memoryBytes: number;
  /** 'auto' picks the PVM profile on nested PVM hosts. */
  readonly profile?: 'auto' | 'default' | 'pvm';
  readonly serialOutput: (byte: number) => void;
  readonly onSerialInputSpace?: () => void;
  readonly cacheDir?: string | null;
  /** Raw disk images, each a virtio-blk device on the PCI bus. */
  readonly disks?: ReadonlyArray<{ readonly path: string; readonly readonly: boolean }>;
  /** A virtio-rng device on the PCI bus. */
  readonly rng?: boolean;
  /**
   * A multiport virtio-console on the PCI bus (vm-console.ts): port 0 the kernel's console
   * (console=hvc0 is appended to a Linux command line that names no hvc console; the default
   * line is then DEFAULT_VIRTIO_CONSOLE_CMDLINE), port 1 the agent's port. The caller connects
   * `BootVm.console` before starting the machine.
   */
  readonly virtioConsole?: boolean;
  /**
   * A union of host directories served by an in-process virtio-fs device (tag "novm") on the
   * PCI bus: `--read VM=HOST` / `--write VM=HOST` flags. A Linux guest without an initrd and
   * without its own `root=` mounts it as its root file system.
   */
  readonly fs?: { readonly read: readonly string[]; readonly write: readonly string[] };
  readonly warn?: (message: string) => void;
}

function openDisk(path: string, readonly: boolean): FileBlockBackend {
  try {
    return new FileBlockBackend(path, readonly);
  } catch (error) {
    throw new InputError(`--disk ${path}: ${(error as Error).message}`);
  }
}

export interface BootVm {
  readonly machine: Machine;
  readonly plan: BootPlan;
  readonly profile: CompatProfile;
  /** The virtio console (options.virtioConsole), else undefined. */
  readonly console: ConsoleDevice | undefined;
  /** The kernel command line the guest was given. */
  readonly cmdline: string;
  /** Available once the machine has started. */
  platform(): PcPlatform;
}

export async function createBootVm(options: BootVmOptions): Promise<BootVm> {
  if (!Number.isInteger(options.cpus) || options.cpus < 1 || options.cpus > MAX_VCPUS) {
    throw new InputError(`--cpus ${options.cpus}: must be a whole number from 1 to ${MAX_VCPUS}`);
  }
  let ram;
  try {
    ram = ramLayout(options.memoryBytes);
  } catch (error) {
    throw new InputError(`--memory: ${(error as Error).message}`);
  }
  const profile = options.profile === 'pvm' ? PVM_PROFILE : options.profile === 'default' ? DEFAULT_PROFILE : cpuFacts().pvm ? PVM_PROFILE : DEFAULT_PROFILE;
  const layout = pcPlatformLayout(options.cpus);
  // Read once: the format decides the command line, and loadKernel reuses the bytes.
  const kernelBytes = await readInput(options.kernelPath, 'kernel');
  let format;
  try {
    format = detectKernelFormat(kernelBytes);
  } catch {
    format = undefined; // loadKernel reports a malformed header with the right message
  }
  const isLinux = format === 'elf-vmlinux' || format === 'bzimage';
  // The union is checked (layers exist, do not overlap...) before anything else is created.
  const fsHandler = options.fs ? new FuseHandler(new UnionFs(configFromFlags(options.fs.read, options.fs.write))) : undefined;
  const base = options.cmdline ?? (options.virtioConsole === true ? DEFAULT_VIRTIO_CONSOLE_CMDLINE : DEFAULT_LINUX_CMDLINE);
  const fsRoot = fsHandler !== undefined && options.initrdPath === undefined && !/(^|\s)root=/.test(base) ? FS_ROOT_CMDLINE : '';
  const withRoot = [base, fsRoot].filter((s) => s !== '').join(' ');
  const withConsole = options.virtioConsole === true ? withHvcConsole(withRoot) : withRoot;
  const cmdline = isLinux ? [withConsole, profile.linuxCmdline].filter((s) => s !== '').join(' ') : options.cmdline ?? '';
  const virtioConsole = options.virtioConsole === true ? createVmConsole() : undefined;
  const rsdp = layout.acpi.tables.find((t) => t.signature === 'RSDP');
  const plan = await loadKernel({
    kernelPath: options.kernelPath,
    kernelBytes,
    ...(options.initrdPath !== undefined ? { initrdPath: options.initrdPath } : {}),
    cmdline,
    ...(options.modules ? { modules: options.modules } : {}),
    ram,
    reserved: layout.reserved,
    rsdpAddress: layout.acpi.rsdpAddress,
    ...(rsdp ? { rsdp: rsdp.bytes } : {}),
    ...(options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {}),
    ...(options.warn ? { warn: options.warn } : {}),
  });
  // Devices are opened before the machine exists so a bad path fails before anything runs.
  const backends: FileBlockBackend[] = [];
  try {
    for (const disk of options.disks ?? []) backends.push(openDisk(disk.path, disk.readonly));
  } catch (error) {
    for (const b of backends) b.close();
    throw error;
  }
  let platform: PcPlatform | undefined;
  const machine = Machine.create({
    cpus: options.cpus,
    memoryBytes: options.memoryBytes,
    boot: plan,
    extraSegments: [{ address: layout.acpi.base, bytes: layout.acpi.blob }],
    localDevices: layout.localDevices,
    cpuid: (index, supported) => cpuidForVcpu(supported, { vcpuIndex: index, vcpuCount: options.cpus, apicId: index }, { profile: profile.cpuid }),
    attachDevices: (ctx) => {
      platform = attachPcPlatform(ctx, layout, {
        serialOutput: options.serialOutput,
        ...(options.onSerialInputSpace ? { onSerialInputSpace: options.onSerialInputSpace } : {}),
      });
      const virtio = new VirtioWiring(ctx);
      backends.forEach((backend, i) => virtio.attachPci(platform!.pci, new BlkDevice(backend, { serial: `novm-disk-${i}` })));
      if (options.rng) virtio.attachPci(platform.pci, new RngDevice());
      if (virtioConsole) virtio.attachPci(platform.pci, virtioConsole);
      if (fsHandler) virtio.attachPci(platform.pci, new FsDevice(fsHandler, { tag: FS_TAG, requestQueues: 1 }));
      return () => {
        void virtio.close();
        for (const b of backends) b.close();
      };
    },
  });
  return {
    machine, plan, profile, console: virtioConsole, cmdline,
    platform: () => {
      if (platform === undefined) throw new Error('the machine has not started');
      return platform;
    },
  };
}
