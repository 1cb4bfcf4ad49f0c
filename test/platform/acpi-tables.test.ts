// ACPI tables: structure parsed back and checked, and every table disassembled by ACPICA's
// iasl (acpica-tools) with zero errors and warnings; the DSDT is also recompiled.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildAcpiTables, defaultAcpiConfig, type AcpiMachineConfig, type AcpiTables } from '../../src/platform/index.js';
import * as aml from '../../src/platform/acpi/aml.js';
import { AcpiBuildError } from '../../src/platform/acpi/errors.js';

const hasIasl = spawnSync('iasl', ['-v'], { encoding: 'utf8' }).status === 0;

function sum(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let s = 0;
  for (let i = start; i < end; i++) s = (s + bytes[i]!) & 0xff;
  return s;
}

/** Reads tables back from the blob the way an OS does: RSDP -> XSDT -> each table. */
function parse(tables: AcpiTables): Map<string, { address: number; bytes: Uint8Array }> {
  const blob = tables.blob;
  const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  const at = (address: number): number => {
    const offset = address - tables.base;
    assert.ok(offset >= 0 && offset < blob.length, `address 0x${address.toString(16)} outside the blob`);
    return offset;
  };
  const sdt = (address: number): { address: number; bytes: Uint8Array } => {
    const offset = at(address);
    const length = view.getUint32(offset + 4, true);
    const bytes = blob.subarray(offset, offset + length);
    assert.equal(bytes.length, length, 'table runs past the blob');
    assert.equal(sum(bytes), 0, `checksum of ${String.fromCharCode(...bytes.subarray(0, 4))}`);
    return { address, bytes };
  };
  const found = new Map<string, { address: number; bytes: Uint8Array }>();
  const rsdp = blob.subarray(at(tables.rsdpAddress), at(tables.rsdpAddress) + 36);
  assert.equal(Buffer.from(rsdp.subarray(0, 8)).toString('latin1'), 'RSD PTR ');
  assert.equal(sum(rsdp, 0, 20), 0, 'RSDP v1 checksum');
  assert.equal(sum(rsdp, 0, 36), 0, 'RSDP extended checksum');
  assert.equal(rsdp[15], 2, 'RSDP revision');
  const rv = new DataView(rsdp.buffer, rsdp.byteOffset, 36);
  assert.equal(rv.getUint32(20, true), 36);
  const xsdt = sdt(Number(rv.getBigUint64(24, true)));
  const rsdt = sdt(rv.getUint32(16, true));
  found.set('XSDT', xsdt);
  found.set('RSDT', rsdt);
  const xv = new DataView(xsdt.bytes.buffer, xsdt.bytes.byteOffset, xsdt.bytes.length);
  const rtv = new DataView(rsdt.bytes.buffer, rsdt.bytes.byteOffset, rsdt.bytes.length);
  const entries = (xsdt.bytes.length - 36) / 8;
  assert.equal((rsdt.bytes.length - 36) / 4, entries, 'RSDT and XSDT list the same tables');
  for (let i = 0; i < entries; i++) {
    const address = Number(xv.getBigUint64(36 + 8 * i, true));
    assert.equal(rtv.getUint32(36 + 4 * i, true), address);
    const table = sdt(address);
    found.set(Buffer.from(table.bytes.subarray(0, 4)).toString('latin1'), table);
  }
  const fadt = found.get('FACP');
  assert.ok(fadt, 'XSDT lists a FADT');
  const fv = new DataView(fadt.bytes.buffer, fadt.bytes.byteOffset, fadt.bytes.length);
  assert.equal(fadt.bytes[8], 6, 'FADT revision 6');
  assert.equal(fadt.bytes.length, 276);
  const dsdtAddress = Number(fv.getBigUint64(140, true));
  assert.equal(fv.getUint32(40, true), dsdtAddress, 'DSDT and X_DSDT agree');
  found.set('DSDT', sdt(dsdtAddress));
  const facsAddress = Number(fv.getBigUint64(132, true));
  assert.equal(fv.getUint32(36, true), facsAddress);
  assert.equal(facsAddress % 64, 0, 'FACS is 64-byte aligned');
  const facs = blob.subarray(at(facsAddress), at(facsAddress) + 64);
  assert.equal(Buffer.from(facs.subarray(0, 4)).toString('latin1'), 'FACS');
  found.set('FACS', { address: facsAddress, bytes: facs });
  return found;
}

function config(cpus: number, virtioCount: number): AcpiMachineConfig {
  const base = defaultAcpiConfig(
    cpus,
    Array.from({ length: virtioCount }, (_, i) => ({ address: 0xd000_0000 + i * 0x1000, size: 0x1000, irq: 5 + (i % 3) })),
  );
  return {
    ...base,
    i8042Present: true,
    pciHostBridge: { ...base.pciHostBridge, mmio64: { base: 0x80_0000_0000n, size: 0x40_0000_0000n }, intxGsis: [16, 17, 18, 19] },
  };
}

/** Runs iasl in `dir`; fails on any error, warning or checksum complaint. */
function iasl(dir: string, args: string[]): string {
  const run = spawnSync('iasl', args, { cwd: dir, encoding: 'utf8', timeout: 30_000 });
  const output = `${run.stdout}\n${run.stderr}`;
  assert.equal(run.status, 0, `iasl ${args.join(' ')} failed:\n${output}`);
  const withoutSummary = output.replace(/^Compilation successful\. 0 Errors, 0 Warnings.*$/m, '');
  assert.doesNotMatch(withoutSummary, /error|warning|incorrect|invalid|unknown/i, output);
  return output;
}

for (const cpus of [1, 2, 8, 64]) {
  test(`ACPI tables for ${cpus} vCPU(s) parse back with valid checksums and pointers`, () => {
    const tables = buildAcpiTables(config(cpus, cpus === 8 ? 0 : 3));
    const found = parse(tables);
    for (const signature of ['XSDT', 'RSDT', 'FACP', 'APIC', 'MCFG', 'SPCR', 'DSDT', 'FACS']) assert.ok(found.has(signature), signature);
    const madt = found.get('APIC')!.bytes;
    const ids: number[] = [];
    for (let off = 44; off < madt.length; off += madt[off + 1]!) {
      assert.ok(madt[off + 1]! >= 2, 'MADT entry length');
      if (madt[off] === 0) {
        assert.equal(madt[off + 2], madt[off + 3], 'processor UID = APIC id');
        assert.equal(madt[off + 4]! & 1, 1, 'enabled');
        ids.push(madt[off + 3]!);
      }
    }
    assert.deepEqual(ids, Array.from({ length: cpus }, (_, i) => i));
    assert.equal(tables.rsdpAddress, 0xe0000);
    assert.ok(tables.base + tables.blob.length <= 0x10_0000, 'tables stay inside the BIOS area');
  });

  test(`iasl disassembles every ACPI table for ${cpus} vCPU(s) cleanly`, (t) => {
    if (!hasIasl) return t.skip('iasl (acpica-tools) is not installed');
    const dir = mkdtempSync(join(tmpdir(), 'novm-acpi-'));
    try {
      const tables = buildAcpiTables(config(cpus, cpus === 8 ? 0 : 3));
      const files: string[] = [];
      for (const table of tables.tables) {
        // iasl cannot take the RSDP (its signature is not a table name): parse() checks it.
        if (table.signature === 'RSDP') continue;
        const file = `${table.signature.toLowerCase()}.dat`;
        writeFileSync(join(dir, file), table.bytes);
        files.push(file);
      }
      for (const file of files) {
        iasl(dir, ['-d', file]);
        const dsl = readFileSync(join(dir, file.replace('.dat', '.dsl')), 'utf8');
        assert.doesNotMatch(dsl, /Incorrect checksum|\*\*\*\* |Unknown/i, `${file}:\n${dsl}`);
      }
      const dsdt = readFileSync(join(dir, 'dsdt.dsl'), 'utf8');
      for (const expected of ['Device (PCI0)', 'EisaId ("PNP0A08")', 'EisaId ("PNP0A03")', 'Name (_SEG', 'Name (_BBN', 'WordBusNumber', '0x0CF8', 'DWordMemory', 'QWordMemory', 'Method (_OSC, 4', 'Name (_PRT', 'Device (MRES)', 'EisaId ("PNP0C02")', 'Device (COM1)', 'EisaId ("PNP0501")', '0x03F8', 'IRQNoFlags ()\n                    {4}', 'Device (RTC)', 'Device (KBD)', 'Name (\\_S5, Package (0x04)']) {
        assert.ok(dsdt.includes(expected), `DSDT lacks ${expected}`);
      }
      if (cpus !== 8) {
        assert.ok(dsdt.includes('Device (VR02)') && dsdt.includes('"LNRO0005"') && dsdt.includes('Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive'), 'virtio-mmio devices');
      } else {
        assert.ok(!dsdt.includes('LNRO0005'), 'no virtio-mmio device when none is configured');
      }
      // The disassembly must compile back without errors or warnings.
      const out = iasl(dir, ['-p', 'recompiled', 'dsdt.dsl']);
      assert.match(out, /Compilation successful\. 0 Errors, 0 Warnings/);
      const fadt = readFileSync(join(dir, 'facp.dsl'), 'utf8');
      assert.match(fadt, /PM Timer Block Address : 00000608/);
      assert.match(fadt, /PM1A Control Block Address : 00000604/);
      assert.match(fadt, /Hardware Reduced \(V5\) : 0/);
      const mcfg = readFileSync(join(dir, 'mcfg.dsl'), 'utf8');
      assert.match(mcfg, /Base Address : 00000000E0000000/);
      const spcr = readFileSync(join(dir, 'spcr.dsl'), 'utf8');
      assert.match(spcr, /Address : 00000000000003F8/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('AML PkgLength uses the shortest encoding and counts its own bytes', () => {
  assert.deepEqual([...aml.pkgLength(0)], [1]);
  assert.deepEqual([...aml.pkgLength(62)], [63]);
  // 63 body bytes + 2 length bytes = 65 = 0x41: lead 0x41 (1 extra byte, nibble 1), then 0x04.
  assert.deepEqual([...aml.pkgLength(63)], [0x41, 0x04]);
  assert.equal(aml.pkgLength(0xffd).length, 2);
  assert.equal(aml.pkgLength(0xffe).length, 3);
  assert.equal(aml.pkgLength(0xffffc).length, 3);
  assert.equal(aml.pkgLength(0xffffd).length, 4);
  assert.throws(() => aml.pkgLength(2 ** 28), AcpiBuildError);
});

test('AML names, integers and EISA IDs', () => {
  assert.deepEqual([...aml.eisaId('PNP0A08')], [0x0c, 0x41, 0xd0, 0x0a, 0x08]);
  assert.deepEqual([...aml.nameString('\\_SB.PCI0')], [0x5c, 0x2e, ...Buffer.from('_SB_PCI0')]);
  assert.deepEqual([...aml.nameString('\\_SB.PCI0.COM1')], [0x5c, 0x2f, 3, ...Buffer.from('_SB_PCI0COM1')]);
  assert.deepEqual([...aml.nameString('_S5')], [...Buffer.from('_S5_')]);
  assert.deepEqual([...aml.integer(0)], [0]);
  assert.deepEqual([...aml.integer(1)], [1]);
  assert.deepEqual([...aml.integer(0x3f8)], [0x0b, 0xf8, 0x03]);
  assert.deepEqual([...aml.integer(0x1_0000_0000n)], [0x0e, 0, 0, 0, 0, 1, 0, 0, 0]);
  assert.throws(() => aml.nameString('lower'), AcpiBuildError);
  assert.throws(() => aml.eisaId('PNP0A8'), AcpiBuildError);
});

test('invalid machine configs are refused with a typed error', () => {
  const good = defaultAcpiConfig(1);
  assert.throws(() => buildAcpiTables({ ...good, cpus: 0 }), (e: unknown) => e instanceof AcpiBuildError && e.kind === 'config');
  assert.throws(() => buildAcpiTables({ ...good, cpus: 255 }), AcpiBuildError);
  assert.throws(() => buildAcpiTables({ ...good, rsdpAddress: 0xe0008 }), AcpiBuildError);
  assert.throws(() => buildAcpiTables({ ...good, rsdpAddress: 0xfff00 }), (e: unknown) => e instanceof AcpiBuildError && e.kind === 'layout');
  assert.throws(() => buildAcpiTables({ ...good, ecam: { ...good.ecam, busStart: 5, busEnd: 4 } }), AcpiBuildError);
});
