// FsDevice's lazy FORGETs (the vhost-user queue thread's mode): after a kick on the hiprio queue
// the driver's notifications stay off, FORGETs posted without a kick are served at the next
// pollForgets(), interrupts come once per batch of 32, and settleForgets() serves the rest,
// signals it and turns the driver's kicks back on. Without the option nothing changes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FsDevice, type FuseRequestHandler } from '../../src/virtio/devices/fs/fs-device.js';
import { VIRTIO_F_VERSION_1 } from '../../src/virtio/queue/features.js';
import { fakeDriver, type FakeDriver } from './fake-driver.js';

const USED_F_NO_NOTIFY = 1;

function forgetRequest(nodeid: number): Uint8Array {
  const r = new Uint8Array(48);
  const v = new DataView(r.buffer);
  v.setUint32(0, 48, true);
  v.setUint32(4, 2, true); // FUSE_FORGET
  v.setUint32(16, nodeid, true);
  v.setUint32(40, 1, true); // nlookup
  return r;
}

function rig(lazyForgets: boolean): { device: FsDevice; d: FakeDriver; forgotten: number[] } {
  const forgotten: number[] = [];
  const handler: FuseRequestHandler = {
    handle: () => assert.fail('no requests on the request queue here'),
    forget: (request) => forgotten.push(new DataView(request.buffer, request.byteOffset).getUint32(16, true)),
  };
  const device = new FsDevice(handler, { tag: 't', log: () => {}, lazyForgets });
  const d = fakeDriver(2, 64, VIRTIO_F_VERSION_1);
  device.activate(d.context);
  return { device, d, forgotten };
}

const noNotify = (d: FakeDriver): boolean => (d.memory.readU16LE(d.queues[0]!.config.deviceAddr) & USED_F_NO_NOTIFY) !== 0;

test('lazy FORGETs: served without kicks, one interrupt per batch, kicks back once settled', () => {
  const { device, d, forgotten } = rig(true);
  const q = d.queues[0]!;
  q.post([{ length: 48, writable: false, data: forgetRequest(1) }]);
  device.notify(0);
  assert.deepEqual(forgotten, [1]);
  assert.equal(q.takeUsed().length, 1, 'the chain is returned at once');
  assert.ok(noNotify(d), 'the driver is told not to kick');
  assert.equal(device.forgetsPending, true);
  assert.deepEqual(d.notified, [], 'no interrupt for a single FORGET');
  // FORGETs posted without a kick are served at the next wake-up of the thread.
  for (let i = 2; i <= 40; i++) q.post([{ length: 48, writable: false, data: forgetRequest(i) }]);
  device.pollForgets();
  assert.equal(forgotten.length, 40);
  assert.equal(q.takeUsed().length, 39);
  assert.deepEqual(d.notified, [0], 'one interrupt for the batch that reached 32');
  // Idle: the rest is signalled and the driver may kick again.
  q.post([{ length: 48, writable: false, data: forgetRequest(41) }]);
  device.settleForgets();
  assert.equal(forgotten.length, 41);
  assert.deepEqual(d.notified, [0, 0]);
  assert.ok(!noNotify(d), 'kicks are back on');
  assert.equal(device.forgetsPending, false);
  device.pollForgets();
  assert.equal(forgotten.length, 41, 'nothing polled once settled');
  assert.equal(device.stats.forgets, 41);
});

test('lazy FORGETs: a reset leaves nothing pending; a stopped hiprio queue is not polled', () => {
  const { device, d, forgotten } = rig(true);
  d.queues[0]!.post([{ length: 48, writable: false, data: forgetRequest(7) }]);
  device.notify(0);
  assert.equal(device.forgetsPending, true);
  assert.equal(device.quiesce(0), undefined);
  d.queues[0]!.post([{ length: 48, writable: false, data: forgetRequest(8) }]);
  device.pollForgets();
  device.settleForgets();
  assert.deepEqual(forgotten, [7], 'a stopped queue is left alone');
  device.activate(d.context);
  assert.equal(device.forgetsPending, false);
});

test('without lazy FORGETs every kick is served, signalled and re-armed', () => {
  const { device, d, forgotten } = rig(false);
  d.queues[0]!.post([{ length: 48, writable: false, data: forgetRequest(3) }]);
  device.notify(0);
  assert.deepEqual(forgotten, [3]);
  assert.deepEqual(d.notified, [0]);
  assert.ok(!noNotify(d));
  assert.equal(device.forgetsPending, false);
});
