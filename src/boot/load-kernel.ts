// The boot layer's entry point: read the kernel (and initrd / modules), find its format and
// produce a BootPlan. Every user mistake becomes an InputError with one line naming the file.
import { readFile } from 'node:fs/promises';
import { InputError } from '../common/errors.js';
import type { RamRange } from '../memory/layout.js';
import type { BootPlan, MemoryMapEntry } from './boot-plan.js';
import { extractBzImage } from './bzimage.js';
import { isElf, parseElf } from './elf.js';
import { cachedExtract } from './kernel-cache.js';
import { planLinuxBoot, type LinuxEntry, type LinuxKernelImage } from './linux.js';
import { findMultibootHeader } from './multiboot-header.js';
import { planMultibootBoot } from './multiboot.js';
import { hasSetupHeader, parseSetupHeader, type SetupHeader } from './setup-header.js';

export interface ModuleSpec {
  readonly path: string;
  readonly cmdline?: string;
}

export interface LoadKernelOptions {
  readonly kernelPath: string;
  /** The kernel's bytes, when the caller has already read `kernelPath` (it is not read again). */
  readonly kernelBytes?: Uint8Array;
  readonly initrdPath?: string;
  readonly cmdline?: string;
  /** Multiboot modules (an initrd given to a multiboot kernel becomes its first module). */
  readonly modules?: readonly ModuleSpec[];
  /** Guest RAM, e.g. `ramLayout(bytes)` from src/memory/layout.ts. */
  readonly ram: readonly RamRange[];
  /** Ranges the platform keeps (ACPI tables, MMIO windows to report as reserved). */
  readonly reserved?: readonly MemoryMapEntry[];
  readonly rsdpAddress?: number;
  /** The RSDP's own bytes: multiboot 2 passes a copy of it (ACPI old/new RSDP tags). */
  readonly rsdp?: Uint8Array;
  /** Cache of extracted bzImages: a directory, null for none, undefined for the default. */
  readonly cacheDir?: string | null;
  readonly linuxEntry?: LinuxEntry;
  /** When an image carries both multiboot headers: which to use (default 2). */
  readonly multibootVersion?: 1 | 2;
  readonly bootLoaderName?: string;
  readonly warn?: (message: string) => void;
}

export type KernelFormat = 'elf-vmlinux' | 'bzimage' | 'multiboot1' | 'multiboot2';

export async function readInput(path: string, what: string): Promise<Uint8Array> {
  try {
    return await readFile(path);
  } catch (error) {
    const code = error instanceof Error && 'code' in error ? String(error.code) : '';
    const reason = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : code === 'EACCES' ? 'permission denied' : (error instanceof Error ? error.message : String(error));
    throw new InputError(`${what} ${path}: ${reason}`, { cause: error });
  }
}

export function detectKernelFormat(bytes: Uint8Array, multibootVersion: 1 | 2 = 2): KernelFormat | undefined {
  const mb = findMultibootHeader(bytes, multibootVersion);
  if (mb) return mb.version === 1 ? 'multiboot1' : 'multiboot2';
  if (isElf(bytes)) return 'elf-vmlinux';
  if (hasSetupHeader(bytes)) return 'bzimage';
  return undefined;
}

export async function loadKernel(options: LoadKernelOptions): Promise<BootPlan> {
  const path = options.kernelPath;
  const bytes = options.kernelBytes ?? await readInput(path, 'kernel');
  const format = guard(() => detectKernelFormat(bytes, options.multibootVersion), `kernel ${path}`);
  if (format === undefined) {
    throw new InputError(`kernel ${path}: not an ELF vmlinux, bzImage or multiboot kernel (${bytes.length} bytes, starts ${hexBytes(bytes.subarray(0, 4))})`);
  }
  const initrd = options.initrdPath !== undefined ? { path: options.initrdPath, bytes: await readInput(options.initrdPath, 'initrd') } : undefined;
  if (format === 'multiboot1' || format === 'multiboot2') {
    const modules: Array<{ path: string; bytes: Uint8Array; cmdline: string }> = [];
    if (initrd) modules.push({ path: initrd.path, bytes: initrd.bytes, cmdline: initrd.path });
    for (const m of options.modules ?? []) modules.push({ path: m.path, bytes: await readInput(m.path, 'module'), cmdline: m.cmdline ?? m.path });
    return guard(() =>
      planMultibootBoot({
        kernel: { path, bytes },
        version: format === 'multiboot1' ? 1 : 2,
        ...(options.multibootVersion !== undefined ? { preferVersion: options.multibootVersion } : {}),
        cmdline: options.cmdline ?? '',
        modules,
        ram: options.ram,
        reserved: options.reserved ?? [],
        ...(options.rsdp ? { rsdp: options.rsdp } : {}),
        bootLoaderName: options.bootLoaderName ?? 'novm',
      }),
    );
  }
  if ((options.modules ?? []).length > 0) throw new InputError(`kernel ${path}: modules are for multiboot kernels; a Linux kernel takes one initrd`);
  let kernel: LinuxKernelImage;
  if (format === 'elf-vmlinux') {
    kernel = { path, elf: guard(() => parseElf(bytes), `kernel ${path}`), elfBytes: bytes, source: 'ELF vmlinux' };
  } else {
    let header: SetupHeader | undefined;
    let compression = '';
    const extraction = guard(
      () =>
        cachedExtract(
          bytes,
          () => {
            const extracted = extractBzImage(bytes);
            header = extracted.header;
            compression = extracted.compression;
            return extracted.elf;
          },
          { ...(options.cacheDir !== undefined ? { dir: options.cacheDir } : {}), ...(options.warn ? { warn: options.warn } : {}) },
        ),
      `kernel ${path}`,
    );
    header ??= guard(() => parseSetupHeader(bytes), `kernel ${path}`);
    if (!isElf(extraction.bytes)) throw new InputError(`kernel ${path}: cached extraction ${extraction.cachePath ?? ''} is not an ELF file; delete it`);
    kernel = {
      path,
      elf: guard(() => parseElf(extraction.bytes), `kernel ${path} (extracted vmlinux)`),
      elfBytes: extraction.bytes,
      setupHeader: header,
      source: `bzImage (${extraction.fromCache ? 'extracted vmlinux from cache' : `${compression} payload extracted on the host`})`,
    };
  }
  return guard(() =>
    planLinuxBoot({
      kernel,
      ...(initrd ? { initrd } : {}),
      cmdline: options.cmdline ?? '',
      ram: options.ram,
      reserved: options.reserved ?? [],
      ...(options.rsdpAddress !== undefined ? { rsdpAddress: options.rsdpAddress } : {}),
      ...(options.linuxEntry ? { entry: options.linuxEntry } : {}),
    }),
  );
}

/** Turns a typed boot error into an InputError; errors that carry `file` name it themselves. */
function guard<T>(fn: () => T, prefix?: string): T {
  try {
    return fn();
  } catch (error) {
    if (error instanceof InputError) throw error;
    if (error instanceof Error && 'kind' in error) {
      const where = 'file' in error && typeof error.file === 'string' ? error.file : (prefix ?? 'boot');
      throw new InputError(`${where}: ${error.message}`, { cause: error });
    }
    throw error;
  }
}

function hexBytes(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');
}
