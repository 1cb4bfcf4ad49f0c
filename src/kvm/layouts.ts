// Struct sizes and field offsets from <linux/kvm.h> (x86-64), checked by test/kvm/abi.test.ts.

export const SIZEOF = {
  kvm_run: 2352,
  kvm_regs: 144,
  kvm_sregs: 312,
  kvm_segment: 24,
  kvm_dtable: 16,
  kvm_userspace_memory_region: 32,
  kvm_cpuid2: 8,
  kvm_cpuid_entry2: 40,
  kvm_irqfd: 32,
  kvm_ioeventfd: 64,
  kvm_pit_config: 64,
  kvm_irq_level: 8,
  kvm_irq_routing: 8,
  kvm_irq_routing_entry: 48,
  kvm_msi: 32,
  kvm_msrs: 8,
  kvm_msr_entry: 16,
  kvm_vcpu_events: 64,
  kvm_mp_state: 4,
  kvm_fpu: 416,
  kvm_lapic_state: 1024,
} as const;

/** struct kvm_run: the shared page of a vCPU. */
export const RUN = {
  request_interrupt_window: 0,
  immediate_exit: 1,
  exit_reason: 8,
  ready_for_interrupt_injection: 12,
  if_flag: 13,
  flags: 14,
  cr8: 16,
  apic_base: 24,
  // union at 32
  io_direction: 32,
  io_size: 33,
  io_port: 34,
  io_count: 36,
  io_data_offset: 40,
  mmio_phys_addr: 32,
  mmio_data: 40,
  mmio_len: 48,
  mmio_is_write: 52,
  internal_suberror: 32,
  internal_ndata: 36,
  internal_data: 40,
  emulation_insn_size: 48,
  emulation_insn_bytes: 49,
  system_event_type: 32,
  system_event_ndata: 36,
  fail_entry_reason: 32,
  fail_entry_cpu: 40,
  ex_exception: 32,
  ex_error_code: 36,
  kvm_valid_regs: 288,
} as const;

export const SREGS = {
  cs: 0, ds: 24, es: 48, fs: 72, gs: 96, ss: 120, tr: 144, ldt: 168,
  gdt: 192, idt: 208, cr0: 224, cr2: 232, cr3: 240, cr4: 248, cr8: 256, efer: 264, apic_base: 272,
  interrupt_bitmap: 280,
} as const;

export const SEGMENT = {
  base: 0, limit: 8, selector: 12, type: 14, present: 15, dpl: 16, db: 17, s: 18, l: 19, g: 20, avl: 21, unusable: 22,
} as const;

/** kvm_regs is 18 u64s in this order. */
export const REG_NAMES = [
  'rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags',
] as const;

export const IOEVENTFD = { datamatch: 0, addr: 8, len: 16, fd: 20, flags: 24 } as const;
export const IRQFD = { fd: 0, gsi: 4, flags: 8, resamplefd: 12 } as const;
export const VCPU_EVENTS = { exception: 0, interrupt: 8, nmi: 12, sipi_vector: 16, flags: 20 } as const;
export const IRQ_ROUTING_ENTRY_U = 16;
export const FPU = { fcw: 128, mxcsr: 408 } as const;
