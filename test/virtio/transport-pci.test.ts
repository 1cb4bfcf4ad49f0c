import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { PCI_MMIO_START } from '../../src/memory/layout.js';
import { PciHeader } from '../../src/pci/config-space.js';
import { PciSegment } from '../../src/pci/segment.js';
import { DeviceStatus } from '../../src/virtio/device.js';
import { VirtioPciDevice } from '../../src/virtio/transport/virtio-pci.js';
import { RecordingDevice, RecordingSink, read, write } from '../pci/fakes.js';

const ACK = DeviceStatus.Acknowledge;
const DRIVER = DeviceStatus.Driver;
const FEATURES_OK = DeviceStatus.FeaturesOk;
const DRIVER_OK = DeviceStatus.DriverOk;

/** A minimal virtio-pci driver doing what Linux's virtio_pci_modern does, through the buses. */
class FakePciDriver {
  readonly caps = new Map<number, { offset: number; length: number; capAt: number }>();
  msixCap = 0;
  bar = 0;
  notifyMultiplier = 0;

  constructor(readonly segment: PciSegment, readonly slot: number) {
    let at = this.cfg(PciHeader.CapabilitiesPointer, 1);
    let guard = 0;
    while (at !== 0 && guard++ < 48) {
      const id = this.cfg(at, 1);
      if (id === 0x09) {
        const type = this.cfg(at + 3, 1);
        this.caps.set(type, { offset: this.cfg(at + 8, 4), length: this.cfg(at + 12, 4), capAt: at });
        if (type === 2) this.notifyMultiplier = this.cfg(at + 16, 4);
      } else if (id === 0x11) {
        this.msixCap = at;
      }
      at = this.cfg(at + 1, 1);
    }
  }

  cfg(reg: number, size: number): number {
    return read(this.segment.ecam, (this.slot << 15) | reg, size);
  }

  setCfg(reg: number, size: number, value: number): void {
    write(this.segment.ecam, (this.slot << 15) | reg, size, value);
  }

  enable(): void {
    this.bar = read(this.segment.ecam, (this.slot << 15) | 0x10, 4) & ~0xf;
    this.bar >>>= 0;
    this.setCfg(PciHeader.Command, 2, 0x0006);
  }

  private at(type: number, offset: number): number {
    return this.bar - PCI_MMIO_START + this.caps.get(type)!.offset + offset;
  }

  common(offset: number, size: number): number {
    return read(this.segment.mmio, this.at(1, offset), size);
  }

  setCommon(offset: number, size: number, value: number): void {
    write(this.segment.mmio, this.at(1, offset), size, value);
  }

  isr(): number {
    return read(this.segment.mmio, this.at(3, 0), 1);
  }

  deviceConfig(offset: number, size: number): number {
    return read(this.segment.mmio, this.at(4, offset), size);
  }

  kick(queue: number, queueNotifyOff: number): void {
    write(this.segment.mmio, this.at(2, queueNotifyOff * this.notifyMultiplier), 2, queue);
  }

  /** reset, ACK, DRIVER, features, FEATURES_OK; returns the status read back. */
  negotiate(features: bigint): number {
    this.setCommon(0x14, 1, 0);
    assert.equal(this.common(0x14, 1), 0, 'reset completes at once');
    this.setCommon(0x14, 1, ACK);
    this.setCommon(0x14, 1, ACK | DRIVER);
    this.setCommon(0x08, 4, 0);
    this.setCommon(0x0c, 4, Number(features & 0xffff_ffffn));
    this.setCommon(0x08, 4, 1);
    this.setCommon(0x0c, 4, Number(features >> 32n));
    this.setCommon(0x14, 1, ACK | DRIVER | FEATURES_OK);
    return this.common(0x14, 1);
  }

  setupQueue(index: number, size: number, desc: number, driver: number, device: number): number {
    this.setCommon(0x16, 2, index);
    this.setCommon(0x18, 2, size);
    this.setCommon(0x20, 4, desc);
    this.setCommon(0x24, 4, 0);
    this.setCommon(0x28, 4, driver);
    this.setCommon(0x2c, 4, 0);
    this.setCommon(0x30, 4, device);
    this.setCommon(0x34, 4, 0);
    const notifyOff = this.common(0x1e, 2);
    this.setCommon(0x1c, 2, 1);
    return notifyOff;
  }
}

function setup(): { segment: PciSegment; device: RecordingDevice; sink: RecordingSink; pci: VirtioPciDevice; driver: FakePciDriver; logs: string[] } {
  const memory = GuestMemory.anonymous([{ start: 0, size: 1 << 20 }]);
  const segment = new PciSegment();
  const device = new RecordingDevice();
  const sink = new RecordingSink();
  const logs: string[] = [];
  const pci = new VirtioPciDevice(device, { memory, interrupts: sink, log: (m) => logs.push(m) });
  const slot = segment.addDevice(pci);
  return { segment, device, sink, pci, driver: new FakePciDriver(segment, slot), logs };
}

test('identity and capabilities follow virtio 1.2 section 4.1', () => {
  const { driver, pci } = setup();
  assert.equal(driver.cfg(0, 2), 0x1af4);
  assert.equal(driver.cfg(2, 2), 0x1044, '0x1040 + device type 4');
  assert.equal(driver.cfg(PciHeader.Revision, 1), 1);
  assert.equal(driver.cfg(PciHeader.SubsystemVendorId, 2), 0x1af4);
  assert.deepEqual([...driver.caps.keys()].sort(), [1, 2, 3, 4, 5]);
  assert.equal(driver.caps.get(4)!.length, 8, 'device config length is the device configSize');
  assert.equal(driver.notifyMultiplier, 4);
  assert.ok(driver.msixCap !== 0);
  assert.equal((driver.cfg(driver.msixCap + 2, 2) & 0x7ff) + 1, 3, 'one vector per queue plus config');
  assert.deepEqual(pci.notifyAddresses(), [], 'no notify address before BAR decode');
  driver.enable();
  const addresses = pci.notifyAddresses();
  assert.equal(addresses.length, 2);
  assert.notEqual(addresses[0], addresses[1]);
  assert.equal(driver.common(0x12, 2), 2, 'num_queues');
  assert.equal(driver.deviceConfig(4, 4), 0x0807_0605);
});

test('negotiation, queue setup, DRIVER_OK activation and notification paths', () => {
  const { driver, device, pci } = setup();
  driver.enable();
  driver.setCommon(0x00, 4, 1);
  assert.equal(driver.common(0x04, 4), 1, 'VERSION_1 in feature word 1');
  driver.setCommon(0x00, 4, 0);
  assert.equal(driver.common(0x04, 4), 1, 'feature bit 0');
  driver.setCommon(0x00, 4, 1);
  assert.equal(driver.common(0x04, 4) & (1 << 8), 0, 'RING_RESET (bit 40) is never offered');

  assert.equal(driver.negotiate((1n << 32n) | 1n), ACK | DRIVER | FEATURES_OK);
  driver.setCommon(0x16, 2, 0);
  assert.equal(driver.common(0x18, 2), 256, 'queue_size starts at the maximum');
  const off0 = driver.setupQueue(0, 128, 0x1000, 0x2000, 0x3000);
  assert.equal(driver.common(0x1c, 2), 1);
  driver.setCommon(0x14, 1, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
  assert.equal(device.activations, 1);
  const ctx = device.context!;
  assert.equal(ctx.features, (1n << 32n) | 1n);
  assert.deepEqual(ctx.queues[0], { size: 128, descAddr: 0x1000, driverAddr: 0x2000, deviceAddr: 0x3000 });
  assert.equal(ctx.queues[1], undefined, 'queue 1 was not enabled');

  driver.kick(0, off0);
  pci.queueNotified(0); // as if from an ioeventfd
  pci.queueNotified(1); // not enabled: ignored
  assert.deepEqual(device.notified, [0, 0]);

  // Queue registers are frozen after DRIVER_OK.
  driver.setCommon(0x16, 2, 0);
  driver.setCommon(0x18, 2, 16);
  assert.equal(driver.common(0x18, 2), 128);

  // Reset through status 0 resets the device and every register.
  const resetsBefore = device.resets;
  driver.setCommon(0x14, 1, 0);
  assert.equal(device.resets, resetsBefore + 1);
  assert.equal(driver.common(0x14, 1), 0);
  assert.equal(driver.common(0x1c, 2), 0);
  pci.queueNotified(0);
  assert.deepEqual(device.notified, [0, 0], 'notify after reset is dropped');
});

test('FEATURES_OK is refused for features the device did not offer or without VERSION_1', () => {
  const { driver } = setup();
  driver.enable();
  assert.equal(driver.negotiate((1n << 32n) | (1n << 5n)), ACK | DRIVER);
  assert.equal(driver.negotiate(1n), ACK | DRIVER);
  assert.equal(driver.negotiate(1n << 32n), ACK | DRIVER | FEATURES_OK);
});

test('invalid status transitions are logged and ignored', () => {
  const { driver, device, logs } = setup();
  driver.enable();
  driver.setCommon(0x14, 1, DRIVER_OK);
  assert.equal(driver.common(0x14, 1), 0);
  driver.setCommon(0x14, 1, ACK);
  driver.setCommon(0x14, 1, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
  assert.equal(driver.common(0x14, 1), ACK);
  assert.equal(device.activations, 0);
  driver.setCommon(0x14, 1, ACK | DeviceStatus.Failed);
  assert.equal(driver.common(0x14, 1), ACK | DeviceStatus.Failed);
  assert.ok(logs.some((l) => l.includes('invalid status transition')));
});

test('MSI-X: masked vectors pend, unmasking delivers, NO_VECTOR for bad vectors', () => {
  const { driver, device, sink } = setup();
  driver.enable();
  driver.setCfg(driver.msixCap + 2, 2, 0x8000); // enable MSI-X
  const tableBase = driver.bar - PCI_MMIO_START + 0x4000;
  write(driver.segment.mmio, tableBase + 16, 4, 0xfee0_0000);
  write(driver.segment.mmio, tableBase + 20, 4, 0);
  write(driver.segment.mmio, tableBase + 24, 4, 0x4041);
  driver.negotiate(1n << 32n);
  driver.setCommon(0x10, 2, 0);
  assert.equal(driver.common(0x10, 2), 0, 'config vector 0 accepted');
  driver.setupQueue(0, 256, 0x1000, 0x2000, 0x3000);
  driver.setCommon(0x1a, 2, 1);
  assert.equal(driver.common(0x1a, 2), 1);
  driver.setCommon(0x16, 2, 1);
  driver.setCommon(0x1a, 2, 77);
  assert.equal(driver.common(0x1a, 2), 0xffff, 'vector out of range reads NO_VECTOR');
  driver.setCommon(0x14, 1, ACK | DRIVER | FEATURES_OK | DRIVER_OK);

  device.context!.notifyQueue(0);
  assert.equal(sink.messages.length, 0, 'vector 1 still masked');
  const pba = driver.bar - PCI_MMIO_START + 0x5000;
  assert.equal(read(driver.segment.mmio, pba, 4) & 2, 2, 'pending bit set');
  write(driver.segment.mmio, tableBase + 28, 4, 0); // unmask vector 1
  assert.deepEqual(sink.messages, [{ address: 0xfee0_0000n, data: 0x4041 }]);
  assert.equal(read(driver.segment.mmio, pba, 4) & 2, 0);
  device.context!.notifyQueue(0);
  assert.equal(sink.messages.length, 2);
  // Function mask holds everything back until cleared.
  driver.setCfg(driver.msixCap + 2, 2, 0xc000);
  device.context!.notifyQueue(0);
  assert.equal(sink.messages.length, 2);
  driver.setCfg(driver.msixCap + 2, 2, 0x8000);
  assert.equal(sink.messages.length, 3);
  assert.deepEqual(sink.levels, [], 'INTx never used while MSI-X is on');
});

test('INTx fallback: ISR read-to-clear deasserts the line', () => {
  const { driver, device, sink } = setup();
  driver.enable();
  driver.negotiate(1n << 32n);
  driver.setupQueue(0, 256, 0x1000, 0x2000, 0x3000);
  driver.setCommon(0x14, 1, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
  device.context!.notifyQueue(0);
  assert.equal(sink.level, true);
  device.context!.notifyConfig();
  assert.equal(driver.isr(), 3);
  assert.equal(sink.level, false);
  assert.equal(driver.isr(), 0);
  assert.deepEqual(sink.levels, [true, false]);
  // Switching MSI-X on while INTx is asserted drops the line.
  device.context!.notifyQueue(0);
  assert.equal(sink.level, true);
  driver.setCfg(driver.msixCap + 2, 2, 0x8000);
  assert.equal(sink.level, false);
  // INTx disabled in Command: the line stays low.
  driver.setCfg(driver.msixCap + 2, 2, 0);
  assert.equal(sink.level, true);
  driver.setCfg(PciHeader.Command, 2, 0x0406);
  assert.equal(sink.level, false);
});

test('device needs reset: status bit, config interrupt, stale callbacks dropped', () => {
  const { driver, device, sink } = setup();
  driver.enable();
  driver.negotiate(1n << 32n);
  driver.setupQueue(0, 256, 0x1000, 0x2000, 0x3000);
  driver.setCommon(0x14, 1, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
  const generation = driver.common(0x15, 1);
  device.throwOnNotify = true;
  driver.kick(0, 0);
  assert.equal(driver.common(0x14, 1) & DeviceStatus.DeviceNeedsReset, DeviceStatus.DeviceNeedsReset);
  assert.notEqual(driver.common(0x15, 1), generation);
  assert.equal(driver.isr() & 2, 2);
  assert.equal(sink.level, false);
  const stale = device.context;
  // The driver writing its status back with NEEDS_RESET set changes nothing.
  driver.setCommon(0x14, 1, driver.common(0x14, 1));
  driver.setCommon(0x14, 1, 0);
  assert.equal(driver.common(0x14, 1), 0);
  stale?.notifyQueue(0);
  assert.equal(sink.levels.filter((l) => l).length, 1, 'no interrupt from a stale activation');
});

test('PCI_CFG capability gives a window onto BAR 0', () => {
  const { driver } = setup();
  driver.enable();
  const cap = driver.caps.get(5)!.capAt;
  driver.setCfg(cap + 4, 1, 0);
  driver.setCfg(cap + 8, 4, 0x12);
  driver.setCfg(cap + 12, 4, 2);
  assert.equal(driver.cfg(cap + 16, 2), 2, 'num_queues through the window');
  driver.setCfg(cap + 8, 4, 0x14);
  driver.setCfg(cap + 12, 4, 1);
  driver.setCfg(cap + 16, 1, ACK);
  assert.equal(driver.common(0x14, 1), ACK, 'status written through the window');
  driver.setCfg(cap + 8, 4, 0x13); // misaligned for length 2
  driver.setCfg(cap + 12, 4, 2);
  driver.cfg(cap + 16, 2); // dropped, no throw
});
