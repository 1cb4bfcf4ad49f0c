// What a boot loader produces: plain data, no KVM. "Place these bytes at these guest
// addresses and start the boot vCPU with these registers."

/** A segment descriptor as KVM's struct kvm_segment holds it. */
export interface SegmentState {
  readonly base: number;
  readonly limit: number;
  readonly selector: number;
  readonly type: number;
  readonly present: boolean;
  readonly dpl: number;
  /** 1 = 32-bit default operand size. */
  readonly db: boolean;
  /** 1 = data/code segment, 0 = system segment. */
  readonly s: boolean;
  /** 1 = 64-bit code segment. */
  readonly l: boolean;
  /** 1 = limit in 4 KiB units. */
  readonly g: boolean;
}

export interface TableRegister {
  readonly base: number;
  readonly limit: number;
}

/** The boot vCPU's initial state. Registers not named start at zero. */
export interface CpuStartState {
  readonly mode: 'long64' | 'protected32';
  readonly rip: number;
  readonly rsp: number;
  readonly rflags: number;
  /** General-purpose registers by name (rax, rbx, rsi, ...). */
  readonly gpr: Readonly<Partial<Record<'rax' | 'rbx' | 'rcx' | 'rdx' | 'rsi' | 'rdi' | 'rbp', number>>>;
  readonly cr0: number;
  readonly cr3: number;
  readonly cr4: number;
  readonly efer: number;
  readonly cs: SegmentState;
  readonly ds: SegmentState;
  readonly es: SegmentState;
  readonly fs: SegmentState;
  readonly gs: SegmentState;
  readonly ss: SegmentState;
  readonly tr: SegmentState;
  readonly ldt: SegmentState;
  readonly gdt: TableRegister;
  readonly idt: TableRegister;
}

export interface MemorySegment {
  readonly address: number;
  readonly bytes: Uint8Array;
  /** What it is, for error messages and `novm boot --verbose`. */
  readonly what: string;
}

export interface BootPlan {
  readonly segments: readonly MemorySegment[];
  readonly cpu: CpuStartState;
  /** Lowest guest address the loaded images occupy, and the end of the highest one. */
  readonly loadedRange: { readonly start: number; readonly end: number };
  /** Human-readable summary: format, entry point, notable choices. */
  readonly description: string;
  /** Which boot protocol the plan follows (absent for hand-made plans). */
  readonly protocol?: BootProtocol;
  /** The memory map handed to the guest (e820 / multiboot mmap / PVH memmap), for logs and tests. */
  readonly memoryMap?: readonly MemoryMapEntry[];
  /** Guest addresses of the boot structures the plan wrote (zero page, info structure, ...). */
  readonly structures?: Readonly<Record<string, number>>;
  /** The kernel's PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY), when it has one. */
  readonly pvhEntry?: number;
}

export type BootProtocol = 'linux-64' | 'linux-pvh' | 'multiboot1' | 'multiboot2';

/** One e820 / multiboot memory-map entry. */
export interface MemoryMapEntry {
  readonly address: number;
  readonly size: number;
  readonly type: 'ram' | 'reserved' | 'acpi' | 'nvs';
}
