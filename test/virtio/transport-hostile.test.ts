// Hostile drivers: random register traffic of any offset, size and value on both transports.
// Rules (DESIGN rule 10): nothing throws out of a transport, the status only ever holds a
// state from the transitions table, the device is never asked for config bytes outside its
// space, and after the storm a clean bring-up still works.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { InterruptLine } from '../../src/bus/bus-device.js';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { PCI_MMIO_START } from '../../src/memory/layout.js';
import { PciSegment } from '../../src/pci/segment.js';
import { DeviceStatus } from '../../src/virtio/device.js';
import { MmioRegister as R, VirtioMmioDevice } from '../../src/virtio/transport/virtio-mmio.js';
import { VirtioPciDevice } from '../../src/virtio/transport/virtio-pci.js';
import type { VirtioDeviceModel } from '../../src/virtio/device.js';
import { NetDevice } from '../../src/virtio/devices/net/net-device.js';
import { VsockDevice } from '../../src/virtio/devices/vsock/vsock-device.js';
import { RecordingDevice, RecordingSink, read, write } from '../pci/fakes.js';
import { FakeTap } from './net-fake-tap.js';

const LEGAL_STATUS = new Set([0, 1, 3, 11, 15]);

class StrictDevice extends RecordingDevice {
  violations = 0;
  override readConfig(offset: number, data: Uint8Array): void {
    if (offset < 0 || offset + data.length > this.configSize) this.violations++;
    super.readConfig(offset, data);
  }
  override writeConfig(offset: number, data: Uint8Array): void {
    if (offset < 0 || offset + data.length > this.configSize) this.violations++;
    super.writeConfig(offset, data);
  }
}

function assertLegalStatus(status: number): void {
  const core = status & ~(DeviceStatus.DeviceNeedsReset | DeviceStatus.Failed);
  assert.ok(LEGAL_STATUS.has(core), `status 0x${status.toString(16)} is not in the transitions table`);
}

const size = fc.constantFrom(1, 2, 3, 4, 8);
const value = fc.oneof(fc.integer({ min: 0, max: 0xffff_ffff }), fc.constantFrom(0, 1, 3, 11, 15, 0x40, 0x80, 0xffff, 0xffff_ffff));

/** A legitimate bring-up, so that random traffic also lands in the later states. */
const PCI_BRING_UP: ReadonlyArray<readonly [number, number, number]> = [
  [0x14, 1, 0], [0x14, 1, 1], [0x14, 1, 3], [0x08, 4, 1], [0x0c, 4, 1], [0x14, 1, 11], [0x16, 2, 0],
  [0x18, 2, 16], [0x20, 4, 0x1000], [0x28, 4, 0x2000], [0x30, 4, 0x3000], [0x1c, 2, 1], [0x14, 1, 15],
];
const MMIO_BRING_UP: ReadonlyArray<readonly [number, number]> = [
  [0x70, 0], [0x70, 1], [0x70, 3], [0x24, 1], [0x20, 1], [0x70, 11], [0x30, 0], [0x38, 8], [0x80, 0x1000],
  [0x90, 0x2000], [0xa0, 0x3000], [0x44, 1], [0x70, 15],
];

type PciOp =
  | { kind: 'bring-up'; steps: number }
  | { kind: 'bar-read' | 'bar-write'; offset: number; size: number; value: number }
  | { kind: 'cfg-read' | 'cfg-write'; offset: number; size: number; value: number }
  | { kind: 'device'; action: 'queue' | 'config' | 'reset'; queue: number };

const barOffset = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 0x40 }) },
  { weight: 1, arbitrary: fc.integer({ min: 0x1000, max: 0x1004 }) },
  { weight: 1, arbitrary: fc.integer({ min: 0x2000, max: 0x2010 }) },
  { weight: 1, arbitrary: fc.integer({ min: 0x3000, max: 0x3010 }) },
  { weight: 2, arbitrary: fc.integer({ min: 0x4000, max: 0x4040 }) },
  { weight: 1, arbitrary: fc.integer({ min: 0x5000, max: 0x5010 }) },
  { weight: 1, arbitrary: fc.integer({ min: -8, max: 0x9000 }) },
);
const pciOp: fc.Arbitrary<PciOp> = fc.oneof(
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('bring-up' as const), steps: fc.integer({ min: 1, max: PCI_BRING_UP.length }) }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constantFrom('bar-read' as const, 'bar-write' as const), offset: barOffset, size, value }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constantFrom('cfg-read' as const, 'cfg-write' as const), offset: fc.integer({ min: 0, max: 0x1003 }), size, value }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('device' as const), action: fc.constantFrom('queue' as const, 'config' as const, 'reset' as const), queue: fc.integer({ min: -1, max: 3 }) }) },
);

test('virtio-pci survives random register traffic', () => {
  let activeSeen = 0;
  fc.assert(
    fc.property(fc.array(pciOp, { maxLength: 120 }), (ops) => {
      const memory = GuestMemory.anonymous([{ start: 0, size: 1 << 16 }]);
      const segment = new PciSegment();
      const device = new StrictDevice();
      const sink = new RecordingSink();
      const pci = new VirtioPciDevice(device, { memory, interrupts: sink });
      const slot = segment.addDevice(pci);
      const bar = pci.config.barAddress(0);
      write(segment.ecam, (slot << 15) | 4, 2, 6);
      for (const op of ops) {
        const window = op.kind === 'device' || op.kind === 'bring-up' ? 0 : bar - PCI_MMIO_START + op.offset;
        switch (op.kind) {
          case 'bring-up':
            for (const [offset, width, v] of PCI_BRING_UP.slice(0, op.steps)) write(segment.mmio, bar - PCI_MMIO_START + offset, width, v);
            break;
          case 'bar-read': {
            const data = new Uint8Array(op.size);
            if (window >= 0) segment.mmio.read(window, data);
            break;
          }
          case 'bar-write':
            if (window >= 0) write(segment.mmio, window, op.size, op.value);
            break;
          case 'cfg-read':
            segment.ecam.read((slot << 15) | (op.offset & 0xfff), new Uint8Array(op.size));
            break;
          case 'cfg-write':
            write(segment.ecam, (slot << 15) | (op.offset & 0xfff), op.size, op.value);
            break;
          case 'device':
            if (op.action === 'queue') device.context?.notifyQueue(op.queue);
            else if (op.action === 'config') device.context?.notifyConfig();
            else device.context?.needsReset('fuzz');
            break;
        }
        assertLegalStatus(pci.transport.status);
        if (pci.transport.isActive) activeSeen++;
        if (pci.transport.isActive) assert.ok((pci.transport.status & DeviceStatus.DriverOk) !== 0);
      }
      assert.equal(device.violations, 0);
      for (const m of sink.messages) assert.equal(typeof m.data, 'number');

      // Afterwards, firmware-style recovery and a clean bring-up must still work.
      pci.config.setBarAddress(0, bar);
      write(segment.ecam, (slot << 15) | 4, 2, 6);
      const base = bar - PCI_MMIO_START;
      write(segment.mmio, base + 0x14, 1, 0);
      write(segment.mmio, base + 0x14, 1, 1);
      write(segment.mmio, base + 0x14, 1, 3);
      write(segment.mmio, base + 0x08, 4, 1);
      write(segment.mmio, base + 0x0c, 4, 1);
      write(segment.mmio, base + 0x14, 1, 11);
      write(segment.mmio, base + 0x16, 2, 0);
      write(segment.mmio, base + 0x18, 2, 16);
      write(segment.mmio, base + 0x20, 4, 0x1000);
      write(segment.mmio, base + 0x24, 4, 0);
      write(segment.mmio, base + 0x28, 4, 0x2000);
      write(segment.mmio, base + 0x2c, 4, 0);
      write(segment.mmio, base + 0x30, 4, 0x3000);
      write(segment.mmio, base + 0x34, 4, 0);
      write(segment.mmio, base + 0x1c, 2, 1);
      const before = device.activations;
      write(segment.mmio, base + 0x14, 1, 15);
      assert.equal(read(segment.mmio, base + 0x14, 1), 15);
      assert.equal(device.activations, before + 1);
    }),
    { numRuns: 300 },
  );
  assert.ok(activeSeen > 0, 'the fuzzer reached DRIVER_OK at least once');
});

type MmioOp =
  | { kind: 'bring-up'; steps: number }
  | { kind: 'read' | 'write'; offset: number; size: number; value: number }
  | { kind: 'device'; action: 'queue' | 'config' | 'reset'; queue: number };

const mmioOffset = fc.oneof(
  { weight: 5, arbitrary: fc.integer({ min: 0, max: 0x3f }).map((i) => i * 4) },
  { weight: 1, arbitrary: fc.integer({ min: 0x100, max: 0x10c }) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0x1008 }) },
);
const mmioOp: fc.Arbitrary<MmioOp> = fc.oneof(
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('bring-up' as const), steps: fc.integer({ min: 1, max: MMIO_BRING_UP.length }) }) },
  { weight: 8, arbitrary: fc.record({ kind: fc.constantFrom('read' as const, 'write' as const), offset: mmioOffset, size: fc.constantFrom(4, 4, 4, 1, 2, 8), value }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('device' as const), action: fc.constantFrom('queue' as const, 'config' as const, 'reset' as const), queue: fc.integer({ min: -1, max: 3 }) }) },
);

test('virtio-mmio survives random register traffic', () => {
  let activeSeen = 0;
  fc.assert(
    fc.property(fc.array(mmioOp, { maxLength: 120 }), fc.constantFrom('level' as const, 'edge' as const), (ops, triggerMode) => {
      const memory = GuestMemory.anonymous([{ start: 0, size: 1 << 16 }]);
      const device = new StrictDevice();
      let level = false;
      const line: InterruptLine = { setLevel: (high) => { level = high; }, trigger: () => {} };
      const mmio = new VirtioMmioDevice(device, { memory, interrupt: line, triggerMode });
      for (const op of ops) {
        if (op.kind === 'read') mmio.read(op.offset, new Uint8Array(op.size));
        else if (op.kind === 'write') write(mmio, op.offset, op.size, op.value);
        else if (op.kind === 'bring-up') for (const [offset, v] of MMIO_BRING_UP.slice(0, op.steps)) write(mmio, offset, 4, v);
        else if (op.kind !== 'device') continue;
        else if (op.action === 'queue') device.context?.notifyQueue(op.queue);
        else if (op.action === 'config') device.context?.notifyConfig();
        else device.context?.needsReset('fuzz');
        if (mmio.transport.isActive) activeSeen++;
        assertLegalStatus(mmio.transport.status);
        if (triggerMode === 'level') assert.equal(level, mmio.pendingInterrupts !== 0);
      }
      assert.equal(device.violations, 0);
      write(mmio, R.Status, 4, 0);
      write(mmio, R.Status, 4, 1);
      write(mmio, R.Status, 4, 3);
      write(mmio, R.DriverFeaturesSel, 4, 1);
      write(mmio, R.DriverFeatures, 4, 1);
      write(mmio, R.Status, 4, 11);
      write(mmio, R.QueueSel, 4, 0);
      write(mmio, R.QueueNum, 4, 8);
      write(mmio, R.QueueReady, 4, 1);
      const before = device.activations;
      write(mmio, R.Status, 4, 15);
      assert.equal(read(mmio, R.Status, 4), 15);
      assert.equal(device.activations, before + 1);
    }),
    { numRuns: 300 },
  );
  assert.ok(activeSeen > 0, 'the fuzzer reached DRIVER_OK at least once');
});

/** Guest memory full of deterministic junk: rings and buffers are whatever the bytes say. */
function junkMemory(seed: number): GuestMemory {
  const memory = GuestMemory.anonymous([{ start: 0, size: 1 << 16 }]);
  const bytes = new Uint8Array(1 << 16);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < bytes.length; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    bytes[i] = x & 0xff;
  }
  memory.write(0, bytes);
  return memory;
}

test('real devices (net, vsock) behind virtio-pci survive random traffic over junk memory', () => {
  let activeSeen = 0;
  fc.assert(
    fc.property(fc.array(pciOp, { maxLength: 80 }), fc.integer(), fc.boolean(), fc.array(fc.uint8Array({ minLength: 1, maxLength: 200 }), { maxLength: 4 }), (ops, seed, useNet, frames) => {
      const memory = junkMemory(seed);
      const tap = new FakeTap(1);
      const device: VirtioDeviceModel = useNet
        ? new NetDevice(tap, { log: () => {} })
        : new VsockDevice({ guestCid: 3, log: () => {}, host: { connect: () => { throw new Error('no host side in this test'); } } });
      const segment = new PciSegment();
      const pci = new VirtioPciDevice(device, { memory, interrupts: new RecordingSink() });
      const slot = segment.addDevice(pci);
      const bar = pci.config.barAddress(0);
      write(segment.ecam, (slot << 15) | 4, 2, 6);
      for (const op of ops) {
        const window = op.kind === 'device' || op.kind === 'bring-up' ? 0 : bar - PCI_MMIO_START + op.offset;
        switch (op.kind) {
          case 'bring-up':
            for (const [offset, width, v] of PCI_BRING_UP.slice(0, op.steps)) write(segment.mmio, bar - PCI_MMIO_START + offset, width, v);
            break;
          case 'bar-read':
            if (window >= 0) segment.mmio.read(window, new Uint8Array(op.size));
            break;
          case 'bar-write':
            if (window >= 0) write(segment.mmio, window, op.size, op.value);
            break;
          case 'cfg-read':
            segment.ecam.read((slot << 15) | (op.offset & 0xfff), new Uint8Array(op.size));
            break;
          case 'cfg-write':
            write(segment.ecam, (slot << 15) | (op.offset & 0xfff), op.size, op.value);
            break;
          case 'device':
            for (const f of frames) tap.inject(f);
            pci.queueNotified(Math.max(0, op.queue));
            break;
        }
        if (pci.transport.isActive) activeSeen++;
        assertLegalStatus(pci.transport.status);
      }
      device.reset();
    }),
    { numRuns: 300 },
  );
  assert.ok(activeSeen > 0, 'the fuzzer reached DRIVER_OK with a real device');
});
