import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PciConfigSpace, PciHeader } from '../../src/pci/config-space.js';
import type { BarMapping, PciDevice } from '../../src/pci/pci-device.js';
import { PciSegment } from '../../src/pci/segment.js';
import { PCI_MMIO_SIZE, PCI_MMIO_START } from '../../src/memory/layout.js';
import { read, write } from './fakes.js';

const ecamOffset = (slot: number, reg: number): number => (slot << 15) | reg;

class BarEcho implements PciDevice {
  readonly config = new PciConfigSpace({ vendorId: 0x1234, deviceId: 0x5678, classCode: 0xff0000, revision: 3, subsystemVendorId: 0, subsystemId: 0, interruptPin: 1 });
  readonly accesses: string[] = [];
  constructor(size: number, is64Bit: boolean) {
    this.config.addBar(0, { size, is64Bit, prefetchable: false });
  }
  barRead(bar: number, offset: number, data: Uint8Array): void {
    this.accesses.push(`r${bar}:${offset}`);
    data.fill(0xab);
  }
  barWrite(bar: number, offset: number, data: Uint8Array): void {
    this.accesses.push(`w${bar}:${offset}:${data[0]}`);
  }
}

test('host bridge at 00:00.0 through ECAM and 0xCF8', () => {
  const segment = new PciSegment();
  assert.equal(read(segment.ecam, ecamOffset(0, 0), 4), 0x1237_8086);
  assert.equal(read(segment.ecam, ecamOffset(0, 0x0a), 2), 0x0600);
  // Absent slots and functions read all-ones (the guest's "nothing here").
  assert.equal(read(segment.ecam, ecamOffset(5, 0), 4), 0xffff_ffff);
  assert.equal(read(segment.ecam, ecamOffset(0, 0) | (1 << 12), 4), 0xffff_ffff);
  assert.equal(read(segment.ecam, 1 << 20, 4), 0xffff_ffff, 'bus 1 does not exist');
  write(segment.configIo, 0, 4, 0x8000_0000);
  assert.equal(read(segment.configIo, 4, 4), 0x1237_8086);
  assert.equal(read(segment.configIo, 0, 4), 0x8000_0000);
  write(segment.configIo, 0, 4, 0x8000_0008);
  assert.equal(read(segment.configIo, 7, 1), 0x06, 'class byte through CONFIG_DATA + 3');
  write(segment.configIo, 0, 4, 0x0000_0000);
  assert.equal(read(segment.configIo, 4, 4), 0xffff_ffff, 'enable bit clear: no access');
});

test('0xCF9 reset control: bit 2 asks for a reboot', () => {
  let requests = 0;
  const segment = new PciSegment({ onResetRequest: () => requests++ });
  write(segment.configIo, 1, 1, 0x02);
  assert.equal(requests, 0);
  assert.equal(read(segment.configIo, 1, 1), 0x02);
  write(segment.configIo, 1, 1, 0x06);
  assert.equal(requests, 1);
  assert.equal(read(segment.configIo, 1, 1), 0x02, 'the reset bit is self-clearing');
});

test('BAR sizing, allocation, decode enable and guest reprogramming', () => {
  const segment = new PciSegment();
  const events: string[] = [];
  segment.observe({
    barMapped: (_d, m: BarMapping) => events.push(`map ${m.slot}/${m.bar}@${m.address.toString(16)}`),
    barUnmapped: (_d, m: BarMapping) => events.push(`unmap ${m.slot}/${m.bar}@${m.address.toString(16)}`),
  });
  const a = new BarEcho(0x4000, true);
  const b = new BarEcho(0x1000, false);
  const slotA = segment.addDevice(a);
  const slotB = segment.addDevice(b, { interruptLine: 11 });
  assert.deepEqual([slotA, slotB], [1, 2]);
  assert.equal(read(segment.ecam, ecamOffset(slotB, PciHeader.InterruptLine), 1), 11);
  const barA = a.config.barAddress(0);
  assert.ok(barA >= PCI_MMIO_START && barA % 0x4000 === 0);
  assert.notEqual(b.config.barAddress(0), barA);

  // Sizing protocol: all-ones in, size mask out (flags preserved: 64-bit type in bits 2:1).
  write(segment.ecam, ecamOffset(slotA, 0x10), 4, 0xffff_ffff);
  write(segment.ecam, ecamOffset(slotA, 0x14), 4, 0xffff_ffff);
  assert.equal(read(segment.ecam, ecamOffset(slotA, 0x10), 4), 0xffff_c004);
  assert.equal(read(segment.ecam, ecamOffset(slotA, 0x14), 4), 0xffff_ffff);
  const originalB = b.config.barAddress(0);
  write(segment.ecam, ecamOffset(slotB, 0x10), 4, 0xffff_ffff);
  assert.equal(read(segment.ecam, ecamOffset(slotB, 0x10), 4), 0xffff_f000);
  write(segment.ecam, ecamOffset(slotB, 0x10), 4, originalB);
  write(segment.ecam, ecamOffset(slotA, 0x10), 4, barA);
  write(segment.ecam, ecamOffset(slotA, 0x14), 4, 0);
  assert.deepEqual(events, [], 'nothing decoded before memory space is enabled');

  // A read through the window before decode hits nothing.
  assert.equal(read(segment.mmio, barA - PCI_MMIO_START, 4), 0xffff_ffff);
  write(segment.ecam, ecamOffset(slotA, PciHeader.Command), 2, 0x0006);
  assert.deepEqual(events, [`map ${slotA}/0@${barA.toString(16)}`]);
  assert.equal(read(segment.mmio, barA - PCI_MMIO_START + 8, 4), 0xabab_abab);
  write(segment.mmio, barA - PCI_MMIO_START + 0x10, 1, 7);
  assert.deepEqual(a.accesses, ['r0:8', 'w0:16:7']);

  // Moving the BAR: unmapped at the old address, mapped at the new one.
  const moved = PCI_MMIO_START + 0x100_0000;
  write(segment.ecam, ecamOffset(slotA, 0x10), 4, moved);
  assert.deepEqual(events.slice(1), [`unmap ${slotA}/0@${barA.toString(16)}`, `map ${slotA}/0@${moved.toString(16)}`]);
  assert.equal(segment.mapping(slotA, 0)?.address, moved);

  // Outside the window: not decoded, no crash.
  write(segment.ecam, ecamOffset(slotA, 0x10), 4, 0x1000_0000);
  assert.equal(segment.mapping(slotA, 0), undefined);
  // Overlapping another decoded BAR: refused.
  write(segment.ecam, ecamOffset(slotB, PciHeader.Command), 2, 0x0002);
  const barB = b.config.barAddress(0);
  assert.equal(segment.mapping(slotB, 0)?.address, barB);
  write(segment.ecam, ecamOffset(slotA, 0x10), 4, barB);
  assert.equal(segment.mapping(slotA, 0), undefined);
  assert.ok(barB + 0x1000 <= PCI_MMIO_START + PCI_MMIO_SIZE);

  // Read-only identity: writes to vendor/device/class are ignored.
  write(segment.ecam, ecamOffset(slotA, 0), 4, 0);
  assert.equal(read(segment.ecam, ecamOffset(slotA, 0), 4), 0x5678_1234);
});

test('capability list links in order and sets the status bit', () => {
  const config = new PciConfigSpace({ vendorId: 1, deviceId: 2, classCode: 0, revision: 0, subsystemVendorId: 0, subsystemId: 0, interruptPin: 0 });
  const first = config.addCapability(0x09, 16);
  const second = config.addCapability(0x11, 12);
  const byte = (offset: number): number => {
    const d = new Uint8Array(1);
    config.read(offset, d);
    return d[0]!;
  };
  assert.equal(byte(PciHeader.CapabilitiesPointer), first);
  assert.equal(byte(first + 1), second);
  assert.equal(byte(second + 1), 0);
  assert.equal(byte(PciHeader.Status) & 0x10, 0x10);
  // Misaligned and oversized accesses read all-ones and are dropped on write.
  const d = new Uint8Array(4);
  config.read(2, d);
  assert.deepEqual([...d], [0xff, 0xff, 0xff, 0xff]);
  assert.equal(config.write(4095, new Uint8Array(2)), false);
});
