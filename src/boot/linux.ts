// Linux boot plans: the ELF vmlinux loaded at its physical addresses and entered either by the
// 64-bit boot protocol (Documentation/arch/x86/boot.rst, "64-bit Boot Protocol": long mode,
// identity-mapped page tables, __BOOT_CS/__BOOT_DS, RSI = boot_params) or by PVH (32-bit entry,
// EBX = hvm_start_info).
import type { RamRange } from '../memory/layout.js';
import { buildBootParams, BOOT_PARAMS_SIZE } from './boot-params.js';
import type { BootPlan, MemoryMapEntry, MemorySegment } from './boot-plan.js';
import { cString } from './bytes.js';
import type { ElfImage } from './elf.js';
import { loadElfSegments, physicalEntry } from './elf-load.js';
import { buildMemoryMap } from './memory-map.js';
import { GuestPlacement, hex } from './placement.js';
import { buildModlist, buildPvhMemmap, buildStartInfo, findPvhEntry, HVM_START_INFO_SIZE } from './pvh.js';
import { formatVersion, type SetupHeader } from './setup-header.js';
import { buildGdt, buildIdentityPageTables, cpuStartState, GDT_SIZE, PAGE_TABLES_SIZE } from './x86-state.js';

/** Linux's x86 COMMAND_LINE_SIZE is 2048 including the NUL; used when there is no setup header. */
const DEFAULT_CMDLINE_MAX = 2047;
/** Modern x86-64 kernels all report 0x7fffffff; used when there is no setup header. */
const DEFAULT_INITRD_ADDR_MAX = 0x7fff_ffff;
const BOOT_STACK_SIZE = 0x4000;

export type LinuxEntry = 'auto' | '64bit' | 'pvh';

export interface LinuxKernelImage {
  readonly path: string;
  readonly elf: ElfImage;
  /** The ELF file (a plain vmlinux, or the one extracted from a bzImage). */
  readonly elfBytes: Uint8Array;
  readonly setupHeader?: SetupHeader;
  /** e.g. "ELF vmlinux" or "bzImage (xz payload, from cache)". */
  readonly source: string;
}

export interface LinuxBootInput {
  readonly kernel: LinuxKernelImage;
  readonly initrd?: { readonly path: string; readonly bytes: Uint8Array };
  readonly cmdline: string;
  readonly ram: readonly RamRange[];
  readonly reserved: readonly MemoryMapEntry[];
  readonly rsdpAddress?: number;
  readonly entry?: LinuxEntry;
}

/** A problem with one of the user's files; `file` names it. */
export class LinuxBootError extends Error {
  readonly kind = 'linux-boot' as const;
  constructor(readonly file: string, message: string) {
    super(message);
  }
}

export function planLinuxBoot(input: LinuxBootInput): BootPlan {
  const { kernel } = input;
  const placement = new GuestPlacement(input.ram, input.reserved);
  const memoryMap = buildMemoryMap(input.ram, input.reserved);
  const segments: MemorySegment[] = [];
  const structures: Record<string, number> = {};

  if (kernel.elf.bits !== 64 || kernel.elf.machine !== 'x86_64') throw new LinuxBootError(kernel.path, 'is not a 64-bit x86 kernel (32-bit Linux is not supported)');
  const loaded = wrap(kernel.path, () => loadElfSegments(kernel.elf, kernel.elfBytes, placement, 'kernel'));
  segments.push(...loaded.segments);
  const pvhEntry = findPvhEntry(kernel.elf);
  const usePvh = input.entry === 'pvh';
  if (usePvh && pvhEntry === undefined) throw new LinuxBootError(kernel.path, 'has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); use the 64-bit entry');
  const entry = usePvh ? pvhEntry! : wrap(kernel.path, () => physicalEntry(kernel.elf));

  const cmdlineMax = kernel.setupHeader?.cmdlineSize ?? DEFAULT_CMDLINE_MAX;
  const cmdlineBytes = cString(input.cmdline);
  if (cmdlineBytes.length - 1 > cmdlineMax) {
    throw new LinuxBootError(kernel.path, `command line is ${cmdlineBytes.length - 1} bytes; this kernel accepts at most ${cmdlineMax}`);
  }

  const low = (size: number, what: string, align = 16): number => wrap(kernel.path, () => placement.allocate(size, what, { align, below: 0x10_0000 }));
  const gdt = low(GDT_SIZE, 'GDT');
  segments.push({ address: gdt, bytes: buildGdt(usePvh ? 'protected32' : 'long64'), what: 'GDT' });
  structures.gdt = gdt;
  const stack = low(BOOT_STACK_SIZE, 'boot stack', 4096);
  const cmdline = low(cmdlineBytes.length, 'command line');
  segments.push({ address: cmdline, bytes: cmdlineBytes, what: 'command line' });
  structures.cmdline = cmdline;

  let initrd: { address: number; size: number } | undefined;
  if (input.initrd) {
    const { path, bytes } = input.initrd;
    if (bytes.length === 0) throw new LinuxBootError(path, 'initrd is empty');
    // boot.rst: the initrd goes as high as possible below initrd_addr_max, page-aligned.
    const max = kernel.setupHeader?.initrdAddrMax ?? DEFAULT_INITRD_ADDR_MAX;
    const below = Math.min(max + 1, placement.lowRamEnd());
    const address = wrap(path, () => placement.allocate(bytes.length, `initrd (${bytes.length} bytes)`, { align: 4096, below, fromTop: true }), (m) => `does not fit in guest RAM: ${m}`);
    initrd = { address, size: bytes.length };
    segments.push({ address, bytes, what: 'initrd' });
    structures.initrd = address;
  }

  let description: string;
  let cpu: BootPlan['cpu'];
  if (!usePvh) {
    const zeroPage = low(BOOT_PARAMS_SIZE, 'boot_params', 4096);
    const bootParams = wrap(kernel.path, () =>
      buildBootParams({
        ...(kernel.setupHeader ? { setupHeader: kernel.setupHeader.raw } : {}),
        cmdlineAddress: cmdline,
        ...(initrd ? { initrd } : {}),
        memoryMap,
        ...(input.rsdpAddress !== undefined ? { rsdpAddress: input.rsdpAddress } : {}),
      }),
    );
    segments.push({ address: zeroPage, bytes: bootParams, what: 'boot_params' });
    structures.bootParams = zeroPage;
    const pageTables = low(PAGE_TABLES_SIZE, 'page tables', 4096);
    segments.push({ address: pageTables, bytes: buildIdentityPageTables(pageTables), what: 'identity page tables (4 GiB)' });
    structures.pageTables = pageTables;
    cpu = cpuStartState('long64', { rip: entry, rsp: stack + BOOT_STACK_SIZE, gdtBase: gdt, cr3: pageTables, gpr: { rsi: zeroPage } });
    description = `Linux ${kernel.source}${kernel.setupHeader ? ` (boot protocol ${formatVersion(kernel.setupHeader.version)})` : ''}, 64-bit entry at ${hex(entry)}, boot_params at ${hex(zeroPage)}`;
  } else {
    const modules = initrd ? [initrd] : [];
    const modlist = modules.length > 0 ? low(modules.length * 32, 'PVH module list', 8) : undefined;
    if (modlist !== undefined) segments.push({ address: modlist, bytes: buildModlist(modules), what: 'PVH module list' });
    const memmapBytes = buildPvhMemmap(memoryMap);
    const memmap = low(memmapBytes.length, 'PVH memory map', 8);
    segments.push({ address: memmap, bytes: memmapBytes, what: 'PVH memory map' });
    const startInfo = low(HVM_START_INFO_SIZE, 'hvm_start_info', 8);
    segments.push({
      address: startInfo,
      bytes: buildStartInfo({
        cmdlineAddress: cmdline,
        ...(input.rsdpAddress !== undefined ? { rsdpAddress: input.rsdpAddress } : {}),
        ...(modlist !== undefined ? { modlistAddress: modlist } : {}),
        moduleCount: modules.length,
        memmapAddress: memmap,
        memmapEntries: memoryMap.length,
      }),
      what: 'hvm_start_info',
    });
    structures.startInfo = startInfo;
    cpu = cpuStartState('protected32', { rip: entry, rsp: stack + BOOT_STACK_SIZE, gdtBase: gdt, gpr: { rbx: startInfo } });
    description = `Linux ${kernel.source}, PVH entry at ${hex(entry)}, hvm_start_info at ${hex(startInfo)}`;
  }
  if (initrd) description += `, initrd at ${hex(initrd.address)} (${initrd.size} bytes)`;

  return {
    segments,
    cpu,
    loadedRange: { start: loaded.start, end: loaded.end },
    description,
    protocol: usePvh ? 'linux-pvh' : 'linux-64',
    memoryMap,
    structures,
    ...(pvhEntry !== undefined ? { pvhEntry } : {}),
  };
}

/** Runs `fn`, turning any internal error into a LinuxBootError about `file`. */
function wrap<T>(file: string, fn: () => T, phrase: (message: string) => string = (m) => m): T {
  try {
    return fn();
  } catch (error) {
    if (error instanceof LinuxBootError) throw error;
    if (error instanceof Error && 'kind' in error) throw new LinuxBootError(file, phrase(error.message));
    throw error;
  }
}
