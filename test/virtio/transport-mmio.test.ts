import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { InterruptLine } from '../../src/bus/bus-device.js';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { DeviceStatus } from '../../src/virtio/device.js';
import { MmioRegister as R, VirtioMmioDevice } from '../../src/virtio/transport/virtio-mmio.js';
import { RecordingDevice, read, write } from '../pci/fakes.js';

class RecordingLine implements InterruptLine {
  readonly levels: boolean[] = [];
  triggers = 0;
  setLevel(high: boolean): void {
    this.levels.push(high);
  }
  trigger(): void {
    this.triggers++;
  }
}

function setup(triggerMode: 'level' | 'edge' = 'level'): { mmio: VirtioMmioDevice; device: RecordingDevice; line: RecordingLine } {
  const memory = GuestMemory.anonymous([{ start: 0, size: 1 << 20 }]);
  const device = new RecordingDevice();
  const line = new RecordingLine();
  return { mmio: new VirtioMmioDevice(device, { memory, interrupt: line, triggerMode }), device, line };
}

function bringUp(mmio: VirtioMmioDevice): void {
  const w = (r: number, v: number): void => write(mmio, r, 4, v);
  w(R.Status, 0);
  w(R.Status, DeviceStatus.Acknowledge);
  w(R.Status, DeviceStatus.Acknowledge | DeviceStatus.Driver);
  w(R.DriverFeaturesSel, 1);
  w(R.DriverFeatures, 1);
  w(R.DriverFeaturesSel, 0);
  w(R.DriverFeatures, 1);
  w(R.Status, DeviceStatus.Acknowledge | DeviceStatus.Driver | DeviceStatus.FeaturesOk);
  w(R.QueueSel, 1);
  assert.equal(read(mmio, R.QueueReady, 4), 0);
  assert.equal(read(mmio, R.QueueNumMax, 4), 64);
  w(R.QueueNum, 32);
  w(R.QueueDescLow, 0x4000);
  w(R.QueueDescHigh, 0);
  w(R.QueueDriverLow, 0x5000);
  w(R.QueueDeviceLow, 0x6000);
  w(R.QueueReady, 1);
  w(R.Status, DeviceStatus.Acknowledge | DeviceStatus.Driver | DeviceStatus.FeaturesOk | DeviceStatus.DriverOk);
}

test('identification registers and device config at 0x100', () => {
  const { mmio } = setup();
  assert.equal(read(mmio, R.MagicValue, 4), 0x74726976);
  assert.equal(read(mmio, R.Version, 4), 2);
  assert.equal(read(mmio, R.DeviceId, 4), 4);
  write(mmio, R.DeviceFeaturesSel, 4, 1);
  assert.equal(read(mmio, R.DeviceFeatures, 4), 1, 'VERSION_1, and RING_RESET masked off');
  assert.equal(read(mmio, 0x100, 1), 1);
  assert.equal(read(mmio, 0x104, 4), 0x0807_0605);
  assert.equal(read(mmio, 0x108, 4), 0, 'beyond configSize reads zero');
  assert.equal(read(mmio, R.ShmLenLow, 4), 0xffff_ffff, 'no shared memory region');
  assert.equal(read(mmio, R.MagicValue, 2), 0, 'non-32-bit register access is refused');
  assert.equal(VirtioMmioDevice.notifyAddress(0xd000_0000), 0xd000_0050);
});

test('bring-up activates with the programmed queue; notify and reset', () => {
  const { mmio, device } = setup();
  bringUp(mmio);
  assert.equal(device.activations, 1);
  assert.deepEqual(device.context!.queues, [undefined, { size: 32, descAddr: 0x4000, driverAddr: 0x5000, deviceAddr: 0x6000 }]);
  write(mmio, R.QueueNotify, 4, 1);
  write(mmio, R.QueueNotify, 4, 0); // not enabled
  write(mmio, R.QueueNotify, 4, 9999); // does not exist
  mmio.queueNotified(1);
  assert.deepEqual(device.notified, [1, 1]);
  write(mmio, R.Status, 4, 0);
  assert.equal(read(mmio, R.Status, 4), 0);
  write(mmio, R.QueueSel, 4, 1);
  assert.equal(read(mmio, R.QueueReady, 4), 0, 'reset clears QueueReady (Linux checks it)');
});

test('level interrupt: InterruptStatus and ACK drive the line', () => {
  const { mmio, device, line } = setup('level');
  bringUp(mmio);
  device.context!.notifyQueue(1);
  device.context!.notifyQueue(1);
  assert.deepEqual(line.levels, [true]);
  assert.equal(read(mmio, R.InterruptStatus, 4), 1);
  device.context!.notifyConfig();
  assert.equal(read(mmio, R.InterruptStatus, 4), 3);
  write(mmio, R.InterruptAck, 4, 1);
  assert.deepEqual(line.levels, [true]);
  write(mmio, R.InterruptAck, 4, 2);
  assert.deepEqual(line.levels, [true, false]);
  assert.equal(read(mmio, R.ConfigGeneration, 4), 1);
});

test('edge interrupt triggers once per event', () => {
  const { mmio, device, line } = setup('edge');
  bringUp(mmio);
  device.context!.notifyQueue(1);
  device.context!.notifyQueue(1);
  assert.equal(line.triggers, 2);
  assert.deepEqual(line.levels, []);
});

test('queue high address bits beyond 2^53 make activation fail with NEEDS_RESET', () => {
  const { mmio, device } = setup();
  const w = (r: number, v: number): void => write(mmio, r, 4, v);
  w(R.Status, DeviceStatus.Acknowledge);
  w(R.Status, DeviceStatus.Acknowledge | DeviceStatus.Driver);
  w(R.DriverFeaturesSel, 1);
  w(R.DriverFeatures, 1);
  w(R.Status, DeviceStatus.Acknowledge | DeviceStatus.Driver | DeviceStatus.FeaturesOk);
  w(R.QueueSel, 0);
  w(R.QueueNum, 16);
  w(R.QueueDescHigh, 0xffff_ffff);
  w(R.QueueReady, 1);
  w(R.Status, DeviceStatus.Acknowledge | DeviceStatus.Driver | DeviceStatus.FeaturesOk | DeviceStatus.DriverOk);
  assert.equal(device.activations, 0);
  assert.equal(read(mmio, R.Status, 4) & DeviceStatus.DeviceNeedsReset, DeviceStatus.DeviceNeedsReset);
});

test('a device may signal or give up from inside activate()', () => {
  const memory = GuestMemory.anonymous([{ start: 0, size: 1 << 20 }]);
  const line = new RecordingLine();
  class EagerDevice extends RecordingDevice {
    giveUp = false;
    override activate(context: Parameters<RecordingDevice['activate']>[0]): void {
      super.activate(context);
      if (this.giveUp) context.needsReset('rings are junk');
      else context.notifyQueue(1);
    }
  }
  const eager = new EagerDevice();
  const mmio = new VirtioMmioDevice(eager, { memory, interrupt: line });
  bringUp(mmio);
  assert.equal(read(mmio, R.InterruptStatus, 4), 1, 'the interrupt raised inside activate() is kept');
  assert.equal(mmio.transport.isActive, true);
  write(mmio, R.InterruptAck, 4, 1);
  eager.giveUp = true;
  bringUp(mmio);
  assert.equal(mmio.transport.isActive, false, 'needs-reset inside activate() leaves the transport stopped');
  assert.equal(read(mmio, R.Status, 4) & DeviceStatus.DeviceNeedsReset, DeviceStatus.DeviceNeedsReset);
});
