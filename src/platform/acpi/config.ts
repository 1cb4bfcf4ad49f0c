// What the ACPI tables describe: the machine as plain data. The machine layer fills it from
// its own layout; `defaultAcpiConfig` gives novm's standard x86-64 layout.
import { AcpiBuildError } from './errors.js';

export interface AcpiIoApic {
  readonly address: number;
  readonly id: number;
  readonly gsiBase: number;
}

export interface AcpiEcam {
  readonly base: number;
  readonly busStart: number;
  readonly busEnd: number;
  readonly segment: number;
}

export interface AcpiUart {
  readonly port: number;
  readonly irq: number;
}

/** I/O ports of the ACPI fixed hardware (see src/platform/acpi-pm). */
export interface AcpiPmPorts {
  /** PM1a event block: 2 bytes status + 2 bytes enable. */
  readonly pm1aEvt: number;
  /** PM1a control block: 2 bytes. */
  readonly pm1aCnt: number;
  /** PM timer: 4 bytes, 32-bit counter at 3.579545 MHz. */
  readonly pmTimer: number;
  /** The SCI's ISA IRQ / GSI (wired level-triggered, active-high: an override says so). */
  readonly sciIrq: number;
  /** The SLP_TYP value `\_S5_` names and the PM1a control block treats as power off. */
  readonly s5SleepType: number;
}

export interface AcpiVirtioMmio {
  readonly address: number;
  readonly size: number;
  readonly irq: number;
  /** How the interrupt is delivered; 'edge' suits irqfd without resampling. Default 'edge'. */
  readonly trigger?: 'edge' | 'level';
}

export interface AcpiWindow {
  readonly base: number;
  readonly size: number;
}

export interface AcpiPciHostBridge {
  readonly ioWindow?: AcpiWindow;
  readonly mmio32: AcpiWindow;
  readonly mmio64?: { readonly base: bigint | number; readonly size: bigint | number };
  /** The bridge decodes the 0xCF8/0xCFC configuration mechanism: listed in its _CRS. */
  readonly configIoPorts?: boolean;
  /** Legacy INTx routing (_PRT): GSIs for INTA..INTD, swizzled by slot. Omit: MSI/MSI-X only. */
  readonly intxGsis?: readonly [number, number, number, number];
}

export interface AcpiMachineConfig {
  /** vCPUs; local APIC id = index. 1..254 (xAPIC MADT entries carry an 8-bit id). */
  readonly cpus: number;
  readonly ioapic: AcpiIoApic;
  readonly lapicAddress: number;
  readonly ecam: AcpiEcam;
  readonly uart: AcpiUart;
  readonly pm: AcpiPmPorts;
  readonly virtioMmio: readonly AcpiVirtioMmio[];
  readonly pciHostBridge: AcpiPciHostBridge;
  /** The CMOS RTC's ports (index, data) and IRQ; omit for no RTC (FADT says CMOS absent). */
  readonly rtc?: { readonly port: number; readonly irq: number };
  /** An i8042 at 0x60/0x64: the FADT says whether Linux should probe it. Default false. */
  readonly i8042Present?: boolean;
  /** FADT reset register: write `value` to I/O `port` to reset (e.g. 0x64, 0xFE via the i8042). */
  readonly reset?: { readonly port: number; readonly value: number };
  /** 8259 PICs present (MADT PCAT_COMPAT): KVM's in-kernel irqchip has them. Default true. */
  readonly pcatCompat?: boolean;
  /** Guest physical address of the RSDP; every other table follows it. 16-byte aligned. */
  readonly rsdpAddress: number;
  /** Highest address (exclusive) the tables may reach; default 0x100000 (end of BIOS area). */
  readonly tablesLimit?: number;
  /** OEM identification written into every table header. */
  readonly oemId?: string;
  readonly oemTableId?: string;
}

/** Standard port numbers, matching QEMU's PIIX4 PM block so guests find familiar values. */
export const DEFAULT_PM_PORTS: AcpiPmPorts = {
  pm1aEvt: 0x600,
  pm1aCnt: 0x604,
  pmTimer: 0x608,
  sciIrq: 9,
  s5SleepType: 5,
};

/** novm's standard x86-64 machine, matching src/memory/layout.ts. */
export function defaultAcpiConfig(cpus: number, virtioMmio: readonly AcpiVirtioMmio[] = []): AcpiMachineConfig {
  return {
    cpus,
    ioapic: { address: 0xfec0_0000, id: 0, gsiBase: 0 },
    lapicAddress: 0xfee0_0000,
    ecam: { base: 0xe000_0000, busStart: 0, busEnd: 255, segment: 0 },
    uart: { port: 0x3f8, irq: 4 },
    pm: DEFAULT_PM_PORTS,
    virtioMmio,
    pciHostBridge: {
      configIoPorts: true,
      ioWindow: { base: 0x1000, size: 0xf000 },
      mmio32: { base: 0xc000_0000, size: 0x1000_0000 },
    },
    rtc: { port: 0x70, irq: 8 },
    i8042Present: false,
    reset: { port: 0x64, value: 0xfe },
    rsdpAddress: 0xe_0000,
  };
}

export function validateAcpiConfig(config: AcpiMachineConfig): void {
  const fail = (message: string): never => {
    throw new AcpiBuildError('config', message);
  };
  const u = (value: number, max: number, what: string): void => {
    if (!Number.isSafeInteger(value) || value < 0 || value > max) fail(`${what} must be an integer in 0..${max}, not ${value}`);
  };
  if (!Number.isInteger(config.cpus) || config.cpus < 1 || config.cpus > 254) fail(`cpus must be 1..254, not ${config.cpus}`);
  u(config.ioapic.id, 0xff, 'ioapic.id');
  u(config.ioapic.address, 0xffff_ffff, 'ioapic.address');
  u(config.ioapic.gsiBase, 0xffff_ffff, 'ioapic.gsiBase');
  u(config.lapicAddress, 0xffff_ffff, 'lapicAddress');
  u(config.ecam.base, Number.MAX_SAFE_INTEGER, 'ecam.base');
  u(config.ecam.busStart, 0xff, 'ecam.busStart');
  u(config.ecam.busEnd, 0xff, 'ecam.busEnd');
  u(config.ecam.segment, 0xffff, 'ecam.segment');
  if (config.ecam.busEnd < config.ecam.busStart) fail('ecam.busEnd must not be below ecam.busStart');
  if (config.ecam.base % (1 << 20) !== 0) fail('ecam.base must be 1 MiB aligned');
  u(config.uart.port, 0xfff8, 'uart.port');
  u(config.uart.irq, 15, 'uart.irq');
  for (const [key, value] of Object.entries({ pm1aEvt: config.pm.pm1aEvt, pm1aCnt: config.pm.pm1aCnt, pmTimer: config.pm.pmTimer })) {
    u(value, 0xfffc, `pm.${key}`);
  }
  u(config.pm.sciIrq, 15, 'pm.sciIrq');
  u(config.pm.s5SleepType, 7, 'pm.s5SleepType');
  if (config.virtioMmio.length > 256) fail('at most 256 virtio-mmio devices');
  for (const [i, dev] of config.virtioMmio.entries()) {
    u(dev.address, Number.MAX_SAFE_INTEGER, `virtioMmio[${i}].address`);
    if (!Number.isSafeInteger(dev.size) || dev.size <= 0 || dev.size > 0xffff_ffff) fail(`virtioMmio[${i}].size must be 1..4 GiB`);
    u(dev.irq, 0xffff_ffff, `virtioMmio[${i}].irq`);
  }
  if (config.pciHostBridge.mmio32.size <= 0 || config.pciHostBridge.mmio32.base + config.pciHostBridge.mmio32.size > 0x1_0000_0000) {
    fail('pciHostBridge.mmio32 must be a non-empty window below 4 GiB');
  }
  const io = config.pciHostBridge.ioWindow;
  if (io && (io.size <= 0 || io.base + io.size > 0x10000)) fail('pciHostBridge.ioWindow must be a non-empty window below 0x10000');
  if (config.rtc) {
    u(config.rtc.port, 0xfffe, 'rtc.port');
    u(config.rtc.irq, 15, 'rtc.irq');
  }
  if (config.reset) {
    u(config.reset.port, 0xffff, 'reset.port');
    u(config.reset.value, 0xff, 'reset.value');
  }
  if (config.rsdpAddress % 16 !== 0) fail('rsdpAddress must be 16-byte aligned');
  u(config.rsdpAddress, 0xffff_ffff, 'rsdpAddress');
  if (config.oemId !== undefined && !/^[\x20-\x7e]{1,6}$/.test(config.oemId)) fail('oemId must be 1-6 printable ASCII characters');
  if (config.oemTableId !== undefined && !/^[\x20-\x7e]{1,8}$/.test(config.oemTableId)) fail('oemTableId must be 1-8 printable ASCII characters');
}
