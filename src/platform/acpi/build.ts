// Lays the ACPI tables out at fixed guest addresses, starting at the RSDP:
//
//   rsdpAddress + 0x000   RSDP (36 bytes; in 0xE0000-0xFFFFF a legacy scan finds it too)
//   next 16-byte boundary XSDT, RSDT, FADT, MADT, MCFG, SPCR, DSDT (each 16-byte aligned)
//   next 64-byte boundary FACS (64 bytes, 64-byte aligned as 5.2.10 requires)
//
// The result is one contiguous blob: the machine writes it at `base` and marks
// [base, end) as reserved (or ACPI reclaimable) in the e820 map.
import { validateAcpiConfig, type AcpiMachineConfig } from './config.js';
import { buildDsdt } from './dsdt.js';
import { AcpiBuildError } from './errors.js';
import { NOVM_OEM, type OemInfo } from './sdt.js';
import { buildFacs, buildFadt, buildMadt, buildMcfg, buildRsdp, buildRsdt, buildSpcr, buildXsdt } from './tables.js';

export interface PlacedTable {
  readonly signature: 'RSDP' | 'XSDT' | 'RSDT' | 'FACP' | 'APIC' | 'MCFG' | 'SPCR' | 'DSDT' | 'FACS';
  readonly address: number;
  readonly bytes: Uint8Array;
}

export interface AcpiTables {
  readonly rsdpAddress: number;
  /** Guest address of blob[0] (= rsdpAddress). */
  readonly base: number;
  /** Every table, contiguous, zero-padded between tables. */
  readonly blob: Uint8Array;
  readonly tables: readonly PlacedTable[];
}

const DEFAULT_TABLES_LIMIT = 0x10_0000;

function align(value: number, to: number): number {
  return Math.ceil(value / to) * to;
}

export function buildAcpiTables(config: AcpiMachineConfig): AcpiTables {
  validateAcpiConfig(config);
  const oem: OemInfo = {
    oemId: config.oemId ?? NOVM_OEM.oemId,
    oemTableId: config.oemTableId ?? NOVM_OEM.oemTableId,
  };
  // Tables whose size does not depend on addresses are built first to compute the layout.
  const madt = buildMadt(oem, config);
  const mcfg = buildMcfg(oem, config);
  const spcr = buildSpcr(oem, config);
  const dsdt = buildDsdt(oem, config);
  const pointed = 4; // FADT, MADT, MCFG, SPCR
  const fadtSize = 276;

  const base = config.rsdpAddress;
  let at = base + 36;
  const place = (size: number, alignment = 16): number => {
    const address = align(at, alignment);
    at = address + size;
    return address;
  };
  const xsdtAddress = place(36 + 8 * pointed);
  const rsdtAddress = place(36 + 4 * pointed);
  const fadtAddress = place(fadtSize);
  const madtAddress = place(madt.length);
  const mcfgAddress = place(mcfg.length);
  const spcrAddress = place(spcr.length);
  const dsdtAddress = place(dsdt.length);
  const facsAddress = place(64, 64);
  const end = at;
  const limit = config.tablesLimit ?? DEFAULT_TABLES_LIMIT;
  if (end > limit) {
    throw new AcpiBuildError('layout', `ACPI tables need 0x${(end - base).toString(16)} bytes at 0x${base.toString(16)}, past the limit 0x${limit.toString(16)}`);
  }
  if (end > 0x1_0000_0000) throw new AcpiBuildError('layout', 'ACPI tables must lie below 4 GiB (RSDT and FADT hold 32-bit pointers)');

  const list = [fadtAddress, madtAddress, mcfgAddress, spcrAddress];
  const tables: PlacedTable[] = [
    { signature: 'RSDP', address: base, bytes: buildRsdp(oem, rsdtAddress, xsdtAddress) },
    { signature: 'XSDT', address: xsdtAddress, bytes: buildXsdt(oem, list) },
    { signature: 'RSDT', address: rsdtAddress, bytes: buildRsdt(oem, list) },
    { signature: 'FACP', address: fadtAddress, bytes: buildFadt(oem, config, facsAddress, dsdtAddress) },
    { signature: 'APIC', address: madtAddress, bytes: madt },
    { signature: 'MCFG', address: mcfgAddress, bytes: mcfg },
    { signature: 'SPCR', address: spcrAddress, bytes: spcr },
    { signature: 'DSDT', address: dsdtAddress, bytes: dsdt },
    { signature: 'FACS', address: facsAddress, bytes: buildFacs() },
  ];
  const blob = new Uint8Array(end - base);
  for (const table of tables) blob.set(table.bytes, table.address - base);
  return { rsdpAddress: base, base, blob, tables };
}
