// Multiboot v1 (spec 0.6.96) and v2 (spec 1.6) boot plans: the kernel loaded from its ELF
// program headers (ELF32 or ELF64) or from the header's address fields ("a.out kludge"),
// modules page-aligned after the kernel, and the boot information structure in RAM below
// 4 GiB. Entry (both, 3.2 "Machine state"): 32-bit protected mode, flat 4 GiB segments, paging
// and interrupts off, EAX = the boot loader magic, EBX = physical address of the information.
import type { RamRange } from '../memory/layout.js';
import type { BootPlan, MemoryMapEntry, MemorySegment } from './boot-plan.js';
import { alignUp, ByteReader, ByteWriter, cString } from './bytes.js';
import { isElf, parseElf } from './elf.js';
import { loadElfSegments, physicalEntry } from './elf-load.js';
import { buildMemoryMap, lowerUpperMemoryKiB, MEMORY_TYPE_CODE } from './memory-map.js';
import { findMultibootHeader, type AddressFields, type Multiboot1Header, type Multiboot2Header } from './multiboot-header.js';
import { GuestPlacement, hex } from './placement.js';
import { buildGdt, cpuStartState, GDT_SIZE } from './x86-state.js';

export const MB1_BOOTLOADER_MAGIC = 0x2badb002;
export const MB2_BOOTLOADER_MAGIC = 0x36d76289;
const FOUR_GIB = 2 ** 32;
const BOOT_STACK_SIZE = 0x4000;

export interface MultibootModuleInput {
  readonly path: string;
  readonly bytes: Uint8Array;
  readonly cmdline: string;
}

export interface MultibootBootInput {
  readonly kernel: { readonly path: string; readonly bytes: Uint8Array };
  readonly version: 1 | 2;
  readonly preferVersion?: 1 | 2;
  readonly cmdline: string;
  readonly modules: readonly MultibootModuleInput[];
  readonly ram: readonly RamRange[];
  readonly reserved: readonly MemoryMapEntry[];
  /** The RSDP bytes (20 for ACPI 1.0, 36 for 2.0+): multiboot2 tags 14/15 carry a copy. */
  readonly rsdp?: Uint8Array;
  readonly bootLoaderName: string;
}

export class MultibootError extends Error {
  readonly kind = 'multiboot' as const;
  constructor(readonly file: string, message: string) {
    super(message);
  }
}

interface PlacedModule {
  readonly start: number;
  readonly end: number;
  readonly cmdline: string;
}

export function planMultibootBoot(input: MultibootBootInput): BootPlan {
  const kernelPath = input.kernel.path;
  const header = findMultibootHeader(input.kernel.bytes, input.preferVersion ?? input.version);
  if (!header) throw new MultibootError(kernelPath, 'has no multiboot header');
  const placement = new GuestPlacement(input.ram, input.reserved);
  const memoryMap = buildMemoryMap(input.ram, input.reserved);
  const segments: MemorySegment[] = [];
  const fail = (message: string): never => {
    throw new MultibootError(kernelPath, message);
  };
  const tryPlace = <T>(file: string, fn: () => T): T => {
    try {
      return fn();
    } catch (error) {
      if (error instanceof Error && 'kind' in error && !(error instanceof MultibootError)) throw new MultibootError(file, error.message);
      throw error;
    }
  };

  const address = header.version === 1 ? header.address : mb2AddressFields(header, fail);
  if (header.version === 1) checkV1Flags(header, fail);
  else checkV2Tags(header, input.rsdp !== undefined, fail);

  // The kernel image.
  let kernelStart: number;
  let kernelEnd: number;
  let entry: number;
  if (address && (header.version === 1 || address.loadAddr !== undefined)) {
    const loaded = tryPlace(kernelPath, () => loadWithAddressFields(input.kernel.bytes, header.offset, address, placement, segments, fail));
    kernelStart = loaded.start;
    kernelEnd = loaded.end;
    entry = address.entryAddr ?? fail('the address tag needs an entry address tag');
  } else {
    if (!isElf(input.kernel.bytes)) fail('is not ELF and its multiboot header gives no load addresses');
    const elf = tryPlace(kernelPath, () => parseElf(input.kernel.bytes));
    const loaded = tryPlace(kernelPath, () => loadElfSegments(elf, input.kernel.bytes, placement, 'kernel'));
    segments.push(...loaded.segments);
    kernelStart = loaded.start;
    kernelEnd = loaded.end;
    entry = header.version === 2 && mb2EntryOverride(header) !== undefined ? mb2EntryOverride(header)! : tryPlace(kernelPath, () => physicalEntry(elf));
  }
  if (kernelEnd > FOUR_GIB || entry >= FOUR_GIB) fail(`is loaded or entered above 4 GiB (entry ${hex(entry)}); multiboot enters in 32-bit mode`);

  // Modules: page-aligned, in order, after the kernel (3.3 "mods_addr"; v1 flag 0 asks for it).
  const modules: PlacedModule[] = input.modules.map((m) => {
    const size = Math.max(m.bytes.length, 1);
    const start = tryPlace(m.path, () => placement.allocate(size, `module ${m.path}`, { align: 4096, above: kernelEnd, below: FOUR_GIB }));
    segments.push({ address: start, bytes: m.bytes, what: `module ${m.path}` });
    return { start, end: start + m.bytes.length, cmdline: m.cmdline };
  });

  const gdt = tryPlace(kernelPath, () => placement.allocate(GDT_SIZE, 'GDT', { align: 16, below: FOUR_GIB }));
  segments.push({ address: gdt, bytes: buildGdt('protected32'), what: 'GDT' });
  const stack = tryPlace(kernelPath, () => placement.allocate(BOOT_STACK_SIZE, 'boot stack', { align: 4096, below: FOUR_GIB }));

  const build = header.version === 1 ? buildMultiboot1Info : buildMultiboot2Info;
  const infoSize = build(0, input, modules, memoryMap).length; // layout does not depend on the base
  const info = tryPlace(kernelPath, () => placement.allocate(infoSize, 'multiboot information', { align: 8, below: FOUR_GIB }));
  segments.push({ address: info, bytes: build(info, input, modules, memoryMap), what: 'multiboot information' });

  const magic = header.version === 1 ? MB1_BOOTLOADER_MAGIC : MB2_BOOTLOADER_MAGIC;
  const cpu = cpuStartState('protected32', { rip: entry, rsp: stack + BOOT_STACK_SIZE, gdtBase: gdt, gpr: { rax: magic, rbx: info } });
  return {
    segments,
    cpu,
    loadedRange: { start: kernelStart, end: kernelEnd },
    description: `multiboot${header.version === 2 ? '2' : ''} kernel, entry ${hex(entry)}, information at ${hex(info)}, ${modules.length} module(s)`,
    protocol: header.version === 1 ? 'multiboot1' : 'multiboot2',
    memoryMap,
    structures: { info, gdt, ...Object.fromEntries(modules.map((m, i) => [`module${i}`, m.start])) },
  };
}

function checkV1Flags(header: Multiboot1Header, fail: (m: string) => never): void {
  // Bits 0-15 are requirements: a loader that does not know one must refuse the image (3.1.2).
  // Bit 0 (page-aligned modules) and bit 1 (memory information) are always honoured; bit 2
  // (video mode) is accepted but no video information is passed (there is no display).
  const unknown = header.flags & 0xfff8;
  if (unknown !== 0) fail(`multiboot header requires unsupported features (flags ${hex(header.flags)})`);
}

const MB2_TAG_INFO_REQUEST = 1;
const MB2_TAG_ADDRESS = 2;
const MB2_TAG_ENTRY = 3;
const MB2_TAG_CONSOLE = 4;
const MB2_TAG_MODULE_ALIGN = 6;
const MB2_TAG_RELOCATABLE = 10;
/** Information tag types this loader produces (multiboot2 3.6). */
const MB2_PROVIDED = new Set([1, 2, 3, 4, 6]);

function checkV2Tags(header: Multiboot2Header, haveRsdp: boolean, fail: (m: string) => never): void {
  if (header.architecture !== 0) fail(`multiboot2 architecture ${header.architecture} is not i386 (0)`);
  for (const tag of header.tags) {
    switch (tag.type) {
      case MB2_TAG_INFO_REQUEST: {
        if (tag.optional) break;
        const r = new ByteReader(tag.body);
        for (let at = 0; at + 4 <= tag.body.length; at += 4) {
          const wanted = r.u32(at);
          const provided = MB2_PROVIDED.has(wanted) || (haveRsdp && (wanted === 14 || wanted === 15));
          if (!provided) fail(`multiboot2 header requires information tag ${wanted}, which novm does not provide`);
        }
        break;
      }
      case MB2_TAG_ADDRESS:
      case MB2_TAG_ENTRY:
      case MB2_TAG_MODULE_ALIGN: // modules are always page-aligned
      case MB2_TAG_RELOCATABLE: // loaded at its link address, which the tag permits
        break;
      case MB2_TAG_CONSOLE: {
        // Bit 0: "at least one of supported consoles must be present"; there is no EGA text console.
        const consoleFlags = tag.body.length >= 4 ? new ByteReader(tag.body).u32(0) : 0;
        if (!tag.optional && (consoleFlags & 1) !== 0) fail('multiboot2 header requires a text console, which novm does not have');
        break;
      }
      default:
        if (!tag.optional) fail(`multiboot2 header tag ${tag.type} is required but not supported (framebuffer and EFI tags are not)`);
    }
  }
}

function mb2AddressFields(header: Multiboot2Header, fail: (m: string) => never): AddressFields | undefined {
  const tag = header.tags.find((t) => t.type === MB2_TAG_ADDRESS);
  if (!tag) return undefined;
  if (tag.body.length < 16) fail('multiboot2 address tag is too short');
  const r = new ByteReader(tag.body);
  const entryAddr = mb2EntryOverride(header);
  return { headerAddr: r.u32(0), loadAddr: r.u32(4), loadEndAddr: r.u32(8), bssEndAddr: r.u32(12), ...(entryAddr !== undefined ? { entryAddr } : {}) };
}

function mb2EntryOverride(header: Multiboot2Header): number | undefined {
  const tag = header.tags.find((t) => t.type === MB2_TAG_ENTRY);
  return tag && tag.body.length >= 4 ? new ByteReader(tag.body).u32(0) : undefined;
}

/** Loads the image as the header's address fields say (v1 3.1.3, v2 3.1.5). */
function loadWithAddressFields(file: Uint8Array, headerOffset: number, a: AddressFields, placement: GuestPlacement, segments: MemorySegment[], fail: (m: string) => never): { start: number; end: number } {
  // v2: load_addr -1 means "load from the beginning of the file".
  const loadAddr = a.loadAddr === 0xffffffff ? a.headerAddr - headerOffset : a.loadAddr;
  if (loadAddr > a.headerAddr) fail(`multiboot load_addr ${hex(loadAddr)} is above header_addr ${hex(a.headerAddr)}`);
  const fileStart = headerOffset - (a.headerAddr - loadAddr);
  if (fileStart < 0) fail('multiboot address fields put the load start before the beginning of the file');
  const loadEnd = a.loadEndAddr === 0 ? loadAddr + (file.length - fileStart) : a.loadEndAddr;
  if (loadEnd < loadAddr || fileStart + (loadEnd - loadAddr) > file.length) fail(`multiboot load_end_addr ${hex(loadEnd)} lies past the end of the file`);
  const bssEnd = a.bssEndAddr === 0 ? loadEnd : a.bssEndAddr;
  if (bssEnd < loadEnd) fail(`multiboot bss_end_addr ${hex(bssEnd)} is below load_end_addr`);
  placement.claim(loadAddr, bssEnd - loadAddr, 'kernel image');
  segments.push({ address: loadAddr, bytes: file.subarray(fileStart, fileStart + (loadEnd - loadAddr)), what: 'kernel image' });
  if (bssEnd > loadEnd) segments.push({ address: loadEnd, bytes: new Uint8Array(bssEnd - loadEnd), what: 'kernel bss (zeroed)' });
  return { start: loadAddr, end: bssEnd };
}

/** Multiboot v1 information (3.3): the fixed structure, then mmap, module list and strings. */
export function buildMultiboot1Info(base: number, input: MultibootBootInput, modules: readonly PlacedModule[], map: readonly MemoryMapEntry[]): Uint8Array {
  const FIXED = 88; // through vbe_interface_len; the framebuffer fields stay absent (flag 12 clear)
  const mmapAt = FIXED;
  const mmapLength = map.length * 24;
  const modsAt = mmapAt + mmapLength;
  const strings: Uint8Array[] = [];
  let stringsAt = modsAt + modules.length * 16;
  const addString = (text: string): number => {
    const bytes = cString(text);
    const at = stringsAt;
    strings.push(bytes);
    stringsAt += bytes.length;
    return base + at;
  };
  const cmdline = addString(input.cmdline);
  const loaderName = addString(input.bootLoaderName);
  const moduleStrings = modules.map((m) => addString(m.cmdline));
  const w = new ByteWriter(alignUp(stringsAt, 8));
  const FLAG_MEM = 1 << 0;
  const FLAG_CMDLINE = 1 << 2;
  const FLAG_MODS = 1 << 3;
  const FLAG_MMAP = 1 << 6;
  const FLAG_LOADER_NAME = 1 << 9;
  const { lower, upper } = lowerUpperMemoryKiB(map);
  w.u32(0, FLAG_MEM | FLAG_CMDLINE | FLAG_MODS | FLAG_MMAP | FLAG_LOADER_NAME);
  w.u32(4, lower).u32(8, upper).u32(16, cmdline).u32(20, modules.length).u32(24, base + modsAt);
  w.u32(44, mmapLength).u32(48, base + mmapAt).u32(64, loaderName);
  // Each mmap entry is preceded by its size (20), not counting the size field itself (3.3).
  map.forEach((e, i) => w.u32(mmapAt + i * 24, 20).u64(mmapAt + i * 24 + 4, e.address).u64(mmapAt + i * 24 + 12, e.size).u32(mmapAt + i * 24 + 20, MEMORY_TYPE_CODE[e.type]));
  modules.forEach((m, i) => w.u32(modsAt + i * 16, m.start).u32(modsAt + i * 16 + 4, m.end).u32(modsAt + i * 16 + 8, moduleStrings[i]!));
  let at = modsAt + modules.length * 16;
  for (const s of strings) {
    w.set(at, s);
    at += s.length;
  }
  return w.bytes;
}

/** Multiboot2 information (3.6): total_size, reserved, then 8-aligned tags ending with type 0. */
export function buildMultiboot2Info(_base: number, input: MultibootBootInput, modules: readonly PlacedModule[], map: readonly MemoryMapEntry[]): Uint8Array {
  const tags: Uint8Array[] = [];
  const tag = (type: number, body: Uint8Array): void => {
    const w = new ByteWriter(8 + body.length);
    w.u32(0, type).u32(4, 8 + body.length).set(8, body);
    tags.push(w.bytes);
  };
  tag(1, cString(input.cmdline));
  tag(2, cString(input.bootLoaderName));
  for (const m of modules) {
    const name = cString(m.cmdline);
    const body = new ByteWriter(8 + name.length).u32(0, m.start).u32(4, m.end).set(8, name);
    tag(3, body.bytes);
  }
  const { lower, upper } = lowerUpperMemoryKiB(map);
  tag(4, new ByteWriter(8).u32(0, lower).u32(4, upper).bytes);
  const mmap = new ByteWriter(8 + map.length * 24).u32(0, 24).u32(4, 0);
  map.forEach((e, i) => mmap.u64(8 + i * 24, e.address).u64(8 + i * 24 + 8, e.size).u32(8 + i * 24 + 16, MEMORY_TYPE_CODE[e.type]));
  tag(6, mmap.bytes);
  if (input.rsdp) {
    // ACPI 1.0 RSDP (revision 0, 20 bytes) -> tag 14; revision >= 2 (length at offset 20) -> tag 15.
    const revision = input.rsdp[15] ?? 0;
    if (revision >= 2 && input.rsdp.length >= 36) tag(15, input.rsdp.subarray(0, Math.min(input.rsdp.length, Math.max(36, new ByteReader(input.rsdp).u32(20)))));
    else tag(14, input.rsdp.subarray(0, 20));
  }
  tag(0, new Uint8Array(0));
  const total = 8 + tags.reduce((n, t) => n + alignUp(t.length, 8), 0);
  const out = new ByteWriter(total).u32(0, total).u32(4, 0);
  let at = 8;
  for (const t of tags) {
    out.set(at, t);
    at += alignUp(t.length, 8);
  }
  return out.bytes;
}
