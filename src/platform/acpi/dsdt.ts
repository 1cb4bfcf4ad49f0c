// The DSDT: real AML describing the devices a stock Linux kernel must find through ACPI.
//
//   \_SB.PCI0   PCI Express host bridge (PNP0A08, compatible PNP0A03): _SEG, _BBN, _CRS with
//               the bus range and I/O/MMIO windows, a permissive _OSC, _PRT when INTx is wired
//   \_SB.MRES   motherboard resources (PNP0C02) reserving the ECAM window, which Linux wants
//               to see before it trusts MCFG
//   \_SB.COM1   16550 UART (PNP0501)
//   \_SB.RTC    CMOS RTC (PNP0B00), when configured
//   \_SB.KBD    i8042 keyboard controller (PNP0303), when configured
//   \_SB.VRxx   virtio-mmio transports (LNRO0005: the ID Linux's virtio_mmio driver matches)
//   \_S5_       the S5 sleep type, used by Linux's poweroff
// The power button is the FADT's fixed-feature button, so it has no device here.
import * as aml from './aml.js';
import type { AcpiMachineConfig } from './config.js';
import * as res from './resources.js';
import { TableWriter, type OemInfo, SDT_HEADER_SIZE } from './sdt.js';

function pciHostBridge(config: AcpiMachineConfig): aml.Aml {
  const bridge = config.pciHostBridge;
  const crs: aml.Aml[] = [res.wordBusNumber(config.ecam.busStart, config.ecam.busEnd)];
  if (bridge.configIoPorts) crs.push(res.ioPort(0xcf8, 8));
  if (bridge.ioWindow) crs.push(res.wordIo(bridge.ioWindow.base, bridge.ioWindow.size));
  crs.push(res.memoryWindow(bridge.mmio32.base, bridge.mmio32.size, 32));
  if (bridge.mmio64) crs.push(res.memoryWindow(bridge.mmio64.base, bridge.mmio64.size, 64));
  const terms: aml.Aml[] = [
    aml.name('_HID', aml.eisaId('PNP0A08')),
    aml.name('_CID', aml.eisaId('PNP0A03')),
    aml.name('_UID', aml.integer(0)),
    aml.name('_SEG', aml.integer(config.ecam.segment)),
    aml.name('_BBN', aml.integer(config.ecam.busStart)),
    aml.name('_CRS', res.resourceTemplate(crs)),
    // _OSC (6.2.11): grant the OS every capability it asks for by returning its buffer as
    // is; novm has no firmware that could want to keep control of PCIe features.
    aml.method('_OSC', 4, [aml.returnValue(aml.arg(3))]),
  ];
  if (bridge.intxGsis) terms.push(aml.name('_PRT', routingTable(bridge.intxGsis)));
  return aml.device('PCI0', terms);
}

/**
 * _PRT (6.2.13) for slots 1..31 of the root bus: Package { address 0xSSSSFFFF, pin, 0, GSI }
 * with the usual swizzle (slot + pin) mod 4 over the four INTx GSIs.
 */
function routingTable(gsis: readonly [number, number, number, number]): aml.Aml {
  const entries: aml.Aml[] = [];
  for (let slot = 1; slot < 32; slot++) {
    for (let pin = 0; pin < 4; pin++) {
      const gsi = gsis[(slot + pin) % 4]!;
      entries.push(aml.packageOf([aml.integer(slot * 0x10000 + 0xffff), aml.integer(pin), aml.integer(0), aml.integer(gsi)]));
    }
  }
  // 124 entries fit a Package (at most 255 elements).
  return aml.packageOf(entries);
}

function ecamReservation(config: AcpiMachineConfig): aml.Aml {
  const { base, busStart, busEnd } = config.ecam;
  const start = base + busStart * (1 << 20);
  const size = (busEnd - busStart + 1) * (1 << 20);
  const window = start + size <= 0x1_0000_0000 ? res.memory32Fixed(start, size) : res.memory64Consumer(start, size);
  return aml.device('MRES', [aml.name('_HID', aml.eisaId('PNP0C02')), aml.name('_UID', aml.integer(0)), aml.name('_CRS', res.resourceTemplate([window]))]);
}

function uart(config: AcpiMachineConfig): aml.Aml {
  return aml.device('COM1', [
    aml.name('_HID', aml.eisaId('PNP0501')),
    aml.name('_UID', aml.integer(1)),
    aml.name('_CRS', res.resourceTemplate([res.ioPort(config.uart.port, 8), res.irqNoFlags(config.uart.irq)])),
  ]);
}

function rtc(port: number, irq: number): aml.Aml {
  return aml.device('RTC', [
    aml.name('_HID', aml.eisaId('PNP0B00')),
    aml.name('_CRS', res.resourceTemplate([res.ioPort(port, 2), res.irqNoFlags(irq)])),
  ]);
}

function keyboardController(): aml.Aml {
  return aml.device('KBD', [
    aml.name('_HID', aml.eisaId('PNP0303')),
    aml.name('_CRS', res.resourceTemplate([res.ioPort(0x60, 1), res.ioPort(0x64, 1), res.irqNoFlags(1)])),
  ]);
}

/** The AML name of the n-th virtio-mmio device: VR00 .. VRFF. */
export function virtioMmioDeviceName(index: number): string {
  return `VR${index.toString(16).toUpperCase().padStart(2, '0')}`;
}

function virtioMmio(config: AcpiMachineConfig): aml.Aml[] {
  return config.virtioMmio.map((dev, i) => {
    const window = dev.address + dev.size <= 0x1_0000_0000 ? res.memory32Fixed(dev.address, dev.size) : res.memory64Consumer(dev.address, dev.size);
    const irq = res.extendedInterrupt(dev.irq, { trigger: dev.trigger ?? 'edge', polarity: 'high', shared: false });
    return aml.device(virtioMmioDeviceName(i), [aml.name('_HID', aml.string('LNRO0005')), aml.name('_UID', aml.integer(i)), aml.name('_CRS', res.resourceTemplate([window, irq]))]);
  });
}

/** The DSDT's AML body (without the table header). */
export function buildDsdtAml(config: AcpiMachineConfig): aml.Aml {
  const sb: aml.Aml[] = [pciHostBridge(config), ecamReservation(config), uart(config)];
  if (config.rtc) sb.push(rtc(config.rtc.port, config.rtc.irq));
  if (config.i8042Present) sb.push(keyboardController());
  sb.push(...virtioMmio(config));
  const s5 = config.pm.s5SleepType;
  return aml.concat([
    aml.scope('\\_SB', sb),
    // \_S5_ (7.4.2): SLP_TYPa, SLP_TYPb, two reserved values.
    aml.name('\\_S5', aml.packageOf([aml.integer(s5), aml.integer(s5), aml.integer(0), aml.integer(0)])),
  ]);
}

/** DSDT (5.2.11.1), revision 2: 64-bit AML integers. */
export function buildDsdt(oem: OemInfo, config: AcpiMachineConfig): Uint8Array {
  const body = buildDsdtAml(config);
  const t = new TableWriter('DSDT', SDT_HEADER_SIZE + body.length, 2);
  t.raw(SDT_HEADER_SIZE, body);
  return t.finish(oem);
}
