// novm's PC platform, attached to a machine: the ACPI tables and the legacy devices they
// announce (16550A console UART, CMOS RTC, i8042 for reset, ACPI PM block with the PM timer
// and S5 power-off), the PCI host bridge (ECAM + 0xCF8), and the devices every vCPU handles
// locally. The PIC, IOAPIC, LAPICs and PIT are KVM's in-kernel models.
import type { MemoryMapEntry } from '../boot/boot-plan.js';
import { PCI_ECAM_SIZE, PCI_ECAM_START, PCI_MMIO_SIZE, PCI_MMIO_START } from '../memory/layout.js';
import { PCI_CONFIG_IO_PORT, PCI_CONFIG_IO_SIZE, PciSegment } from '../pci/segment.js';
import { buildAcpiTables, type AcpiTables } from '../platform/acpi/build.js';
import { defaultAcpiConfig, type AcpiMachineConfig, type AcpiVirtioMmio } from '../platform/acpi/config.js';
import { createPlatformDevices, type PlatformDevices } from '../platform/platform-devices.js';
import type { LocalDeviceSpec } from './local-devices.js';
import type { DeviceContext } from './machine.js';

export interface PcPlatformOptions {
  /** Each byte the guest writes to COM1. */
  readonly serialOutput: (byte: number) => void;
  /** The UART's receive FIFO has room again. */
  readonly onSerialInputSpace?: () => void;
}

/** The platform's fixed parts, computed before the machine exists (they go into the boot plan). */
export interface PcPlatformLayout {
  readonly config: AcpiMachineConfig;
  readonly acpi: AcpiTables;
  /** e820 entries the platform reserves (ACPI tables, the ECAM window). */
  readonly reserved: MemoryMapEntry[];
  readonly localDevices: LocalDeviceSpec[];
}

/**
 * `virtioMmio`: the virtio-mmio devices the machine will attach (`virtioMmioSlot(i)` from
 * virtio-attach.ts), so the DSDT describes them and a stock kernel probes them.
 */
export function pcPlatformLayout(cpus: number, virtioMmio: readonly AcpiVirtioMmio[] = []): PcPlatformLayout {
  const config = defaultAcpiConfig(cpus, virtioMmio);
  const acpi = buildAcpiTables(config);
  return {
    config,
    acpi,
    reserved: [
      { address: acpi.base, size: acpi.blob.length, type: 'acpi' },
      // Linux only trusts MMCONFIG when the window is reserved in e820.
      { address: PCI_ECAM_START, size: PCI_ECAM_SIZE, type: 'reserved' },
    ],
    // Port 0x80 is the POST/delay port Linux writes for I/O delays: handled in the vCPU
    // thread, it costs no round trip to the main thread.
    localDevices: [{ kind: 'sink', space: 'pio', base: 0x80, size: 1 }],
  };
}

export interface PcPlatform extends PlatformDevices {
  readonly pci: PciSegment;
}

export function attachPcPlatform(ctx: DeviceContext, layout: PcPlatformLayout, options: PcPlatformOptions): PcPlatform {
  const devices = createPlatformDevices(layout.config, {
    irq: (line) => ctx.irqLine(line),
    wallClock: () => Date.now(),
    monotonicClock: () => performance.now(),
    serialOutput: options.serialOutput,
    ...(options.onSerialInputSpace ? { onSerialInputSpace: options.onSerialInputSpace } : {}),
    onReset: () => ctx.end('reboot', 'guest reset the machine through the i8042'),
    onPowerOff: () => ctx.end('poweroff', 'guest powered off (ACPI S5)'),
  });
  for (const { base, size, device } of devices.pio) ctx.pio.insert(base, size, device);
  const pci = new PciSegment({ mmioStart: PCI_MMIO_START, mmioSize: PCI_MMIO_SIZE });
  ctx.mmio.insert(PCI_ECAM_START, PCI_ECAM_SIZE, pci.ecam);
  ctx.pio.insert(PCI_CONFIG_IO_PORT, PCI_CONFIG_IO_SIZE, pci.configIo);
  ctx.mmio.insert(PCI_MMIO_START, PCI_MMIO_SIZE, pci.mmio);
  return { ...devices, pci };
}
