// ioctl numbers, capabilities and exit reasons from <linux/kvm.h> (x86-64). The values are
// checked against the machine's header by test/kvm/abi.test.ts, which compiles a C program.

export const KVM_API_VERSION = 12;

// System ioctls (on /dev/kvm)
export const KVM_GET_API_VERSION = 0xae00;
export const KVM_CREATE_VM = 0xae01;
export const KVM_CHECK_EXTENSION = 0xae03;
export const KVM_GET_VCPU_MMAP_SIZE = 0xae04;
export const KVM_GET_SUPPORTED_CPUID = 0xc008ae05;
export const KVM_GET_MSR_INDEX_LIST = 0xc004ae02;

// VM ioctls
export const KVM_CREATE_VCPU = 0xae41;
export const KVM_SET_USER_MEMORY_REGION = 0x4020ae46;
export const KVM_SET_TSS_ADDR = 0xae47;
export const KVM_SET_IDENTITY_MAP_ADDR = 0x4008ae48;
export const KVM_CREATE_IRQCHIP = 0xae60;
export const KVM_CREATE_PIT2 = 0x4040ae77;
export const KVM_IRQ_LINE = 0x4008ae61;
export const KVM_SET_GSI_ROUTING = 0x4008ae6a;
export const KVM_IRQFD = 0x4020ae76;
export const KVM_IOEVENTFD = 0x4040ae79;
export const KVM_SIGNAL_MSI = 0x4020aea5;
export const KVM_GET_CLOCK = 0x8030ae7c;
export const KVM_SET_CLOCK = 0x4030ae7b;
export const KVM_ENABLE_CAP = 0x4068aea3;

// vCPU ioctls
export const KVM_RUN = 0xae80;
export const KVM_GET_REGS = 0x8090ae81;
export const KVM_SET_REGS = 0x4090ae82;
export const KVM_GET_SREGS = 0x8138ae83;
export const KVM_SET_SREGS = 0x4138ae84;
export const KVM_SET_CPUID2 = 0x4008ae90;
export const KVM_GET_CPUID2 = 0xc008ae91;
export const KVM_SET_MSRS = 0x4008ae89;
export const KVM_GET_MSRS = 0xc008ae88;
export const KVM_GET_FPU = 0x81a0ae8c;
export const KVM_SET_FPU = 0x41a0ae8d;
export const KVM_GET_LAPIC = 0x8400ae8e;
export const KVM_SET_LAPIC = 0x4400ae8f;
export const KVM_GET_VCPU_EVENTS = 0x8040ae9f;
export const KVM_SET_VCPU_EVENTS = 0x4040aea0;
export const KVM_GET_MP_STATE = 0x8004ae98;
export const KVM_SET_MP_STATE = 0x4004ae99;

// Capabilities
export const KVM_CAP_IRQCHIP = 0x0;
export const KVM_CAP_USER_MEMORY = 0x3;
export const KVM_CAP_SET_TSS_ADDR = 0x4;
export const KVM_CAP_EXT_CPUID = 0x7;
export const KVM_CAP_NR_VCPUS = 0x9;
export const KVM_CAP_NR_MEMSLOTS = 0xa;
export const KVM_CAP_MP_STATE = 0xe;
export const KVM_CAP_IRQ_ROUTING = 0x19;
export const KVM_CAP_IRQFD = 0x20;
export const KVM_CAP_PIT2 = 0x21;
export const KVM_CAP_IOEVENTFD = 0x24;
export const KVM_CAP_VCPU_EVENTS = 0x29;
export const KVM_CAP_MAX_VCPUS = 0x42;
export const KVM_CAP_SIGNAL_MSI = 0x4d;
export const KVM_CAP_IMMEDIATE_EXIT = 0x88;

// Exit reasons (kvm_run.exit_reason)
export const KVM_EXIT_EXCEPTION = 1;
export const KVM_EXIT_IO = 2;
export const KVM_EXIT_DEBUG = 4;
export const KVM_EXIT_HLT = 5;
export const KVM_EXIT_MMIO = 6;
export const KVM_EXIT_IRQ_WINDOW_OPEN = 7;
export const KVM_EXIT_SHUTDOWN = 8;
export const KVM_EXIT_FAIL_ENTRY = 9;
export const KVM_EXIT_INTR = 10;
export const KVM_EXIT_INTERNAL_ERROR = 17;
export const KVM_EXIT_SYSTEM_EVENT = 24;

export const KVM_EXIT_IO_IN = 0;
export const KVM_EXIT_IO_OUT = 1;
export const KVM_INTERNAL_ERROR_EMULATION = 1;
export const KVM_SYSTEM_EVENT_SHUTDOWN = 1;
export const KVM_SYSTEM_EVENT_RESET = 2;
export const KVM_SYSTEM_EVENT_CRASH = 3;

// Flags
export const KVM_MEM_READONLY = 0x2;
export const KVM_IOEVENTFD_FLAG_DATAMATCH = 0x1;
export const KVM_IOEVENTFD_FLAG_PIO = 0x2;
export const KVM_IOEVENTFD_FLAG_DEASSIGN = 0x4;
export const KVM_IRQFD_FLAG_DEASSIGN = 0x1;
export const KVM_IRQ_ROUTING_IRQCHIP = 1;
export const KVM_IRQ_ROUTING_MSI = 2;
export const KVM_PIT_SPEAKER_DUMMY = 1;
export const KVM_VCPUEVENT_VALID_NMI_PENDING = 0x1;
export const KVM_VCPUEVENT_VALID_SIPI_VECTOR = 0x2;

export const KVM_IRQCHIP_PIC_MASTER = 0;
export const KVM_IRQCHIP_PIC_SLAVE = 1;
export const KVM_IRQCHIP_IOAPIC = 2;
