// Snapshots of running transports (DESIGN rule 7): state() survives JSON, restore() into a new
// transport and device resumes the rings where they stood, with the same interrupt routing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { InterruptLine } from '../../src/bus/bus-device.js';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { PCI_MMIO_START } from '../../src/memory/layout.js';
import { PciSegment } from '../../src/pci/segment.js';
import { DeviceStatus } from '../../src/virtio/device.js';
import { NET_HEADER_SIZE, NetDevice } from '../../src/virtio/devices/net/net-device.js';
import { RngDevice } from '../../src/virtio/devices/rng/rng-device.js';
import { TransportStateError } from '../../src/virtio/transport/transport-core.js';
import { MmioRegister as R, VirtioMmioDevice, type VirtioMmioState } from '../../src/virtio/transport/virtio-mmio.js';
import { VirtioPciDevice, type VirtioPciState } from '../../src/virtio/transport/virtio-pci.js';
import { RecordingSink, read, write } from '../pci/fakes.js';
import { FakeTap } from './net-fake-tap.js';
import { FakeVirtqueue } from './net-fake-virtqueue.js';

const frame = (tag: number): Uint8Array => new Uint8Array(NET_HEADER_SIZE + 20).fill(tag, NET_HEADER_SIZE);
const levelLine = (): InterruptLine & { level: boolean } => {
  const line = { level: false, setLevel(high: boolean) { line.level = high; }, trigger() {} };
  return line;
};

test('virtio-mmio: snapshot, JSON, restore into a new device; the tx ring resumes', () => {
  const memory = GuestMemory.anonymous([{ start: 0, size: 4 << 20 }]);
  const tap = new FakeTap(0);
  const mmio = new VirtioMmioDevice(new NetDevice(tap, { log: () => {} }), { memory, interrupt: levelLine() });
  const w = (r: number, v: number): void => write(mmio, r, 4, v);
  const rx = new FakeVirtqueue(memory, 256, 0x10000, 0x100000);
  const tx = new FakeVirtqueue(memory, 256, 0x20000, 0x200000);
  w(R.Status, 1);
  w(R.Status, 3);
  w(R.DriverFeaturesSel, 1);
  w(R.DriverFeatures, 1);
  w(R.Status, 11);
  [rx, tx].forEach((q, i) => {
    w(R.QueueSel, i);
    w(R.QueueNum, 256);
    w(R.QueueDescLow, q.descAddr);
    w(R.QueueDriverLow, q.availAddr);
    w(R.QueueDeviceLow, q.usedAddr);
    w(R.QueueReady, 1);
  });
  w(R.Status, 15);
  tx.postReadable(frame(1));
  tx.postReadable(frame(2));
  w(R.QueueNotify, 1);
  assert.equal(tap.outbound.length, 2);
  assert.equal(read(mmio, R.InterruptStatus, 4), 1);

  const snapshot = JSON.parse(JSON.stringify(mmio.state())) as VirtioMmioState;
  const tap2 = new FakeTap(0);
  const line2 = levelLine();
  const restored = new VirtioMmioDevice(new NetDevice(tap2, { log: () => {} }), { memory, interrupt: line2 });
  restored.restore(snapshot);
  assert.equal(read(restored, R.Status, 4), 15);
  assert.equal(line2.level, true, 'the pending interrupt is raised again');
  assert.equal(read(restored, R.InterruptStatus, 4), 1);
  tx.postReadable(frame(3));
  write(restored, R.QueueNotify, 4, 1);
  assert.deepEqual(tap2.outbound.map((f) => f[NET_HEADER_SIZE]), [3], 'only the new chain: the ring resumed where it stood');
  assert.deepEqual(tx.takeUsed().map((u) => u.id), [0, 1, 2]);
});

test('virtio-pci: snapshot with MSI-X, restore, BARs preserved, same MSI message', () => {
  const memory = GuestMemory.anonymous([{ start: 0, size: 4 << 20 }]);
  const segment = new PciSegment();
  const sink = new RecordingSink();
  const pci = new VirtioPciDevice(new RngDevice(), { memory, interrupts: sink });
  const slot = segment.addDevice(pci);
  write(segment.ecam, (slot << 15) | 4, 2, 6);
  const moved = PCI_MMIO_START + 0x80_0000;
  write(segment.ecam, (slot << 15) | 0x10, 4, moved); // the guest moved BAR 0
  const bar = moved - PCI_MMIO_START;
  const c = (o: number, s: number, v: number): void => write(segment.mmio, bar + o, s, v);
  let msixCap = read(segment.ecam, (slot << 15) | 0x34, 1);
  while (read(segment.ecam, (slot << 15) | msixCap, 1) !== 0x11) msixCap = read(segment.ecam, (slot << 15) | (msixCap + 1), 1);
  write(segment.ecam, (slot << 15) | (msixCap + 2), 2, 0x8000);
  c(0x4000 + 16, 4, 0xfee0_1000);
  c(0x4000 + 24, 4, 0x51);
  c(0x4000 + 28, 4, 0);
  const q = new FakeVirtqueue(memory, 256, 0x10000, 0x100000);
  c(0x14, 1, 1);
  c(0x14, 1, 3);
  c(0x08, 4, 1);
  c(0x0c, 4, 1);
  c(0x14, 1, 11);
  c(0x16, 2, 0);
  c(0x1a, 2, 1);
  c(0x20, 4, q.descAddr);
  c(0x28, 4, q.availAddr);
  c(0x30, 4, q.usedAddr);
  c(0x1c, 2, 1);
  c(0x14, 1, 15);
  q.postWritable(16);
  c(0x3000, 2, 0);
  assert.deepEqual(sink.messages, [{ address: 0xfee0_1000n, data: 0x51 }]);

  const snapshot = JSON.parse(JSON.stringify(pci.state())) as VirtioPciState;
  const segment2 = new PciSegment();
  const sink2 = new RecordingSink();
  const pci2 = new VirtioPciDevice(new RngDevice(), { memory, interrupts: sink2 });
  pci2.restore(snapshot);
  segment2.addDevice(pci2, { slot, preserveBars: true });
  assert.equal(segment2.mapping(slot, 0)?.address, moved, 'BAR 0 decoded where the guest had put it');
  assert.equal(read(segment2.mmio, bar + 0x14, 1), 15);
  q.postWritable(16);
  write(segment2.mmio, bar + 0x3000, 2, 0);
  assert.deepEqual(sink2.messages, [{ address: 0xfee0_1000n, data: 0x51 }], 'same vector, same message');
  assert.deepEqual(q.takeUsed().map((u) => u.len), [16, 16]);
});

test('a snapshot that does not fit is refused with a typed error', () => {
  const memory = GuestMemory.anonymous([{ start: 0, size: 1 << 20 }]);
  const rng = new VirtioPciDevice(new RngDevice(), { memory, interrupts: new RecordingSink() });
  const net = new VirtioPciDevice(new NetDevice(new FakeTap(0)), { memory, interrupts: new RecordingSink() });
  assert.throws(() => net.restore(rng.state()), TransportStateError);
  const good = rng.state();
  const other = new VirtioPciDevice(new RngDevice(), { memory, interrupts: new RecordingSink() });
  assert.throws(() => other.restore({ ...good, core: { ...good.core, driverFeatures: 'zz' } }), TransportStateError);
  assert.throws(() => other.restore({ ...good, core: { ...good.core, status: 0x1ff } }), TransportStateError);
  assert.throws(() => other.restore({ ...good, core: { ...good.core, queues: [{ size: 99999, ready: true, desc: 0, driver: 0, device: 0 }] } }), TransportStateError);
  // After a refused restore the transport still works from scratch.
  other.restore(good);
  assert.equal(other.transport.status & DeviceStatus.DriverOk, 0);
});
