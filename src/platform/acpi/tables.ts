// The fixed-format ACPI tables, each built from the machine config. Offsets are the spec's
// (ACPI 6.5, chapter 5.2), counted from the start of each table.
import type { AcpiMachineConfig } from './config.js';
import { fixChecksum, TableWriter, type OemInfo, SDT_HEADER_SIZE } from './sdt.js';

/** RSDP (5.2.5.3), revision 2: 36 bytes, two checksums. */
export function buildRsdp(oem: OemInfo, rsdtAddress: number, xsdtAddress: number): Uint8Array {
  const out = new Uint8Array(36);
  const v = new DataView(out.buffer);
  out.set(Uint8Array.from('RSD PTR ', (c) => c.charCodeAt(0)), 0);
  for (let i = 0; i < 6; i++) out[9 + i] = i < oem.oemId.length ? oem.oemId.charCodeAt(i) : 0x20;
  out[15] = 2; // revision: ACPI 2.0+ (has the XSDT)
  v.setUint32(16, rsdtAddress, true);
  v.setUint32(20, 36, true);
  v.setBigUint64(24, BigInt(xsdtAddress), true);
  fixChecksum(out, 8, 0, 20); // ACPI 1.0 checksum: first 20 bytes
  fixChecksum(out, 32, 0, 36); // extended checksum: whole structure
  return out;
}

/** XSDT (5.2.8): 64-bit pointers to every other table except the DSDT and FACS. */
export function buildXsdt(oem: OemInfo, addresses: readonly number[]): Uint8Array {
  const t = new TableWriter('XSDT', SDT_HEADER_SIZE + 8 * addresses.length, 1);
  addresses.forEach((address, i) => t.u64(SDT_HEADER_SIZE + 8 * i, address));
  return t.finish(oem);
}

/** RSDT (5.2.7): the same list with 32-bit pointers, for ACPI 1.0 readers (multiboot kernels). */
export function buildRsdt(oem: OemInfo, addresses: readonly number[]): Uint8Array {
  const t = new TableWriter('RSDT', SDT_HEADER_SIZE + 4 * addresses.length, 1);
  addresses.forEach((address, i) => t.u32(SDT_HEADER_SIZE + 4 * i, address));
  return t.finish(oem);
}

/** FACS (5.2.10): 64 bytes, no checksum, 64-byte aligned. Required by a non-reduced FADT. */
export function buildFacs(): Uint8Array {
  const out = new Uint8Array(64);
  const v = new DataView(out.buffer);
  out.set(Uint8Array.from('FACS', (c) => c.charCodeAt(0)), 0);
  v.setUint32(4, 64, true);
  out[32] = 2; // version
  return out;
}

// FADT flags (5.2.9, table 5.10).
const FADT_WBINVD = 1 << 0;
const FADT_PROC_C1 = 1 << 2;
const FADT_SLP_BUTTON = 1 << 5; // 1: no fixed-feature sleep button
const FADT_FIX_RTC = 1 << 6; // 1: RTC wake status not in fixed register space
const FADT_TMR_VAL_EXT = 1 << 8; // 32-bit PM timer
const FADT_RESET_REG_SUP = 1 << 10;
// IA-PC boot architecture flags (5.2.9.3).
const BOOT_8042 = 1 << 1;
const BOOT_VGA_NOT_PRESENT = 1 << 2;
const BOOT_CMOS_RTC_NOT_PRESENT = 1 << 5;

/** CMOS index of the century byte (the RTC model keeps it there). */
export const RTC_CENTURY_INDEX = 0x32;

/**
 * FADT revision 6 (5.2.9), 276 bytes, full (not hardware-reduced): PM1a event and control
 * blocks and the PM timer on I/O ports, SCI on an ISA IRQ, power button as a fixed feature
 * (PWR_BUTTON flag clear). SMI_CMD is 0, so the platform is always in ACPI mode and Linux
 * powers off by writing SLP_TYP(S5)|SLP_EN to PM1a_CNT.
 */
export function buildFadt(oem: OemInfo, config: AcpiMachineConfig, facsAddress: number, dsdtAddress: number): Uint8Array {
  const t = new TableWriter('FACP', 276, 6);
  const pm = config.pm;
  t.u32(36, facsAddress).u32(40, dsdtAddress);
  t.u8(45, 0); // preferred PM profile: unspecified
  t.u16(46, pm.sciIrq);
  // 48 SMI_CMD = 0, 52 ACPI_ENABLE, 53 ACPI_DISABLE = 0: ACPI mode is fixed on.
  t.u32(56, pm.pm1aEvt).u32(64, pm.pm1aCnt).u32(76, pm.pmTimer);
  t.u8(88, 4).u8(89, 2).u8(91, 4); // PM1_EVT_LEN, PM1_CNT_LEN, PM_TMR_LEN
  t.u16(96, 101).u16(98, 1001); // C2/C3 latencies above the limits: C2/C3 not supported
  t.u8(108, config.rtc ? RTC_CENTURY_INDEX : 0);
  let boot = BOOT_VGA_NOT_PRESENT;
  if (config.i8042Present) boot |= BOOT_8042;
  if (!config.rtc) boot |= BOOT_CMOS_RTC_NOT_PRESENT;
  t.u16(109, boot);
  let flags = FADT_WBINVD | FADT_PROC_C1 | FADT_SLP_BUTTON | FADT_FIX_RTC | FADT_TMR_VAL_EXT;
  if (config.reset) {
    flags |= FADT_RESET_REG_SUP;
    t.gas(116, { space: 'io', bitWidth: 8, accessSize: 1, address: config.reset.port });
    t.u8(128, config.reset.value);
  }
  t.u32(112, flags);
  t.u8(131, 5); // FADT minor version: ACPI 6.5
  t.u64(132, facsAddress).u64(140, dsdtAddress);
  t.gas(148, { space: 'io', bitWidth: 32, accessSize: 2, address: pm.pm1aEvt });
  t.gas(172, { space: 'io', bitWidth: 16, accessSize: 2, address: pm.pm1aCnt });
  t.gas(208, { space: 'io', bitWidth: 32, accessSize: 3, address: pm.pmTimer });
  t.raw(268, Uint8Array.from('NOVM\0\0\0\0', (c) => c.charCodeAt(0))); // hypervisor vendor identity
  return t.finish(oem);
}

// MADT structure types (5.2.12).
const MADT_LOCAL_APIC = 0;
const MADT_IO_APIC = 1;
const MADT_INTERRUPT_OVERRIDE = 2;
const MADT_LOCAL_APIC_NMI = 4;
// MPS INTI flags (5.2.12.5, table 5.26).
const INTI_ACTIVE_HIGH = 0x1;
const INTI_LEVEL = 0xc;

/**
 * MADT (5.2.12), revision 5: one enabled local APIC per vCPU (processor UID = APIC id =
 * index), the IOAPIC, ISA overrides IRQ0 -> GSI2 (PIT on pin 2, as every PC) and the SCI
 * (level, active-high, the way KVM_IRQ_LINE drives it), and LINT1 as NMI on all processors.
 */
export function buildMadt(oem: OemInfo, config: AcpiMachineConfig): Uint8Array {
  const overrides: Array<{ source: number; gsi: number; flags: number }> = [{ source: 0, gsi: 2, flags: 0 }];
  overrides.push({ source: config.pm.sciIrq, gsi: config.pm.sciIrq, flags: INTI_ACTIVE_HIGH | INTI_LEVEL });
  const length = 44 + 8 * config.cpus + 12 + 10 * overrides.length + 6;
  const t = new TableWriter('APIC', length, 5);
  t.u32(36, config.lapicAddress).u32(40, config.pcatCompat === false ? 0 : 1);
  let at = 44;
  for (let cpu = 0; cpu < config.cpus; cpu++) {
    t.u8(at, MADT_LOCAL_APIC).u8(at + 1, 8).u8(at + 2, cpu).u8(at + 3, cpu).u32(at + 4, 1);
    at += 8;
  }
  t.u8(at, MADT_IO_APIC).u8(at + 1, 12).u8(at + 2, config.ioapic.id).u32(at + 4, config.ioapic.address).u32(at + 8, config.ioapic.gsiBase);
  at += 12;
  for (const o of overrides) {
    t.u8(at, MADT_INTERRUPT_OVERRIDE).u8(at + 1, 10).u8(at + 2, 0).u8(at + 3, o.source).u32(at + 4, o.gsi).u16(at + 8, o.flags);
    at += 10;
  }
  t.u8(at, MADT_LOCAL_APIC_NMI).u8(at + 1, 6).u8(at + 2, 0xff).u16(at + 3, 0).u8(at + 5, 1);
  return t.finish(oem);
}

/** MCFG (PCI Firmware Specification 3.2, 4.1.2): one ECAM allocation. */
export function buildMcfg(oem: OemInfo, config: AcpiMachineConfig): Uint8Array {
  const t = new TableWriter('MCFG', 44 + 16, 1);
  t.u64(44, config.ecam.base).u16(52, config.ecam.segment).u8(54, config.ecam.busStart).u8(55, config.ecam.busEnd);
  return t.finish(oem);
}

/**
 * SPCR (Microsoft "Serial Port Console Redirection Table", revision 2): the 16550 at the
 * config's I/O port and ISA IRQ, 115200 8N1, no flow control, ANSI terminal.
 */
export function buildSpcr(oem: OemInfo, config: AcpiMachineConfig): Uint8Array {
  const t = new TableWriter('SPCR', 80, 2);
  t.u8(36, 0); // interface type: full 16550
  t.gas(40, { space: 'io', bitWidth: 8, accessSize: 1, address: config.uart.port });
  t.u8(52, 0x01); // interrupt type: PC-AT 8259 IRQ
  t.u8(53, config.uart.irq);
  t.u32(54, 0); // global system interrupt: unused with the 8259 type
  t.u8(58, 7); // 115200 baud
  t.u8(59, 0).u8(60, 1).u8(61, 0); // no parity, 1 stop bit, no flow control
  t.u8(62, 3); // terminal type: ANSI
  t.u16(64, 0xffff).u16(66, 0xffff); // not a PCI device
  return t.finish(oem);
}
