// novm's PC platform, attached to a machine: the ACPI tables, the 16550A console UART, the CMOS
// RTC, the PCI host bridge (ECAM + 0xCF8), and the devices every vCPU handles locally. The
// PIC, IOAPIC, LAPICs and PIT are KVM's in-kernel models.
import type { MemoryMapEntry } from '../boot/boot-plan.js';
import type { BusDevice } from '../bus/bus-device.js';
import { PCI_ECAM_SIZE, PCI_ECAM_START, PCI_MMIO_SIZE, PCI_MMIO_START } from '../memory/layout.js';
import { PCI_CONFIG_IO_PORT, PCI_CONFIG_IO_SIZE, PciSegment } from '../pci/segment.js';
import { buildAcpiTables, type AcpiTables } from '../platform/acpi/build.js';
import { defaultAcpiConfig } from '../platform/acpi/config.js';
import { CmosRtc } from '../platform/rtc/cmos-rtc.js';
import { Uart16550 } from '../platform/serial/uart16550.js';
import type { LocalDeviceSpec } from './local-devices.js';
import type { DeviceContext } from './machine.js';

export const COM1_PORT = 0x3f8;
export const COM1_IRQ = 4;
export const RTC_PORT = 0x70;
export const RTC_IRQ = 8;

export interface PcPlatformOptions {
  readonly cpus: number;
  /** Each byte the guest writes to COM1. */
  readonly serialOutput: (byte: number) => void;
  /** The UART's receive FIFO has room again. */
  readonly onSerialInputSpace?: () => void;
}

/** The platform's fixed parts, computed before the machine exists (they go into the boot plan). */
export interface PcPlatformLayout {
  readonly acpi: AcpiTables;
  /** e820 entries the platform reserves (ACPI tables, MMIO windows). */
  readonly reserved: MemoryMapEntry[];
  readonly localDevices: LocalDeviceSpec[];
}

export function pcPlatformLayout(cpus: number): PcPlatformLayout {
  const acpi = buildAcpiTables(defaultAcpiConfig(cpus));
  return {
    acpi,
    reserved: [
      { address: acpi.base, size: acpi.blob.length, type: 'acpi' },
      { address: PCI_ECAM_START, size: PCI_ECAM_SIZE, type: 'reserved' },
    ],
    // Port 0x80 is the POST/delay port Linux writes for I/O delays: handled in the vCPU
    // thread, it costs no round trip to the main thread.
    localDevices: [{ kind: 'sink', space: 'pio', base: 0x80, size: 1 }],
  };
}

export interface PcPlatform {
  readonly uart: Uart16550;
  readonly rtc: CmosRtc;
  readonly pci: PciSegment;
}

export function attachPcPlatform(ctx: DeviceContext, options: PcPlatformOptions): PcPlatform {
  const uart = new Uart16550({
    irq: ctx.irqLine(COM1_IRQ), output: options.serialOutput,
    ...(options.onSerialInputSpace ? { onInputSpace: options.onSerialInputSpace } : {}),
  });
  ctx.pio.insert(COM1_PORT, 8, uart);
  const rtc = new CmosRtc({ clock: () => Date.now(), irq: ctx.irqLine(RTC_IRQ) });
  ctx.pio.insert(RTC_PORT, 2, rtc);
  const pci = new PciSegment({ mmioStart: PCI_MMIO_START, mmioSize: PCI_MMIO_SIZE });
  ctx.mmio.insert(PCI_ECAM_START, PCI_ECAM_SIZE, pci.ecam as BusDevice);
  ctx.pio.insert(PCI_CONFIG_IO_PORT, PCI_CONFIG_IO_SIZE, pci.configIo as BusDevice);
  ctx.mmio.insert(PCI_MMIO_START, PCI_MMIO_SIZE, pci.mmio as BusDevice);
  return { uart, rtc, pci };
}
