// Public API of the boot layer: boot protocols as pure data producers. Nothing here touches KVM
// or guest memory; the machine writes `plan.segments` and loads `plan.cpu` into the boot vCPU.
export type { BootPlan, BootProtocol, CpuStartState, MemoryMapEntry, MemorySegment, SegmentState, TableRegister } from './boot-plan.js';
export { loadKernel, detectKernelFormat, type KernelFormat, type LoadKernelOptions, type ModuleSpec } from './load-kernel.js';
export { planLinuxBoot, type LinuxBootInput, type LinuxEntry, type LinuxKernelImage } from './linux.js';
export { planMultibootBoot, MB1_BOOTLOADER_MAGIC, MB2_BOOTLOADER_MAGIC, type MultibootBootInput } from './multiboot.js';
export { extractBzImage, type ExtractedKernel } from './bzimage.js';
export { cachedExtract, defaultKernelCacheDir } from './kernel-cache.js';
export { parseElf, isElf, type ElfImage } from './elf.js';
export { buildMemoryMap } from './memory-map.js';
export { decompressKernelPayload, detectCompression, type Compression } from './decompress/index.js';
