// Busy polling on the device side (QueueDevice.startPolling/hasAvailable/pollQueues/stopPolling,
// which the vhost-user queue thread drives): while it is on, a served ring keeps the driver's
// notifications off (USED_F_NO_NOTIFY, or avail_event left behind with EVENT_IDX), chains posted
// without a kick are found and served, and stopping gives the kicks back and reports the chains
// that raced it. Lazy FORGETs keep their own quiet hiprio ring; a lying ring costs NEEDS_RESET.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FsDevice } from '../../src/virtio/devices/fs/fs-device.js';
import { RngDevice } from '../../src/virtio/devices/rng/rng-device.js';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_VERSION_1 } from '../../src/virtio/queue/features.js';
import { fakeDriver, type FakeDriver } from './fake-driver.js';
import { echoHandler as echo, echoRequest } from './fs-echo.js';

const USED_F_NO_NOTIFY = 1;

const getattr = (unique: number): Uint8Array => echoRequest(unique, 3, 56);

function forget(node: number): Uint8Array {
  const r = new Uint8Array(48);
  const v = new DataView(r.buffer);
  v.setUint32(0, 48, true);
  v.setUint32(4, 2, true);
  v.setUint32(16, node, true);
  v.setUint32(40, 1, true);
  return r;
}

const noNotify = (d: FakeDriver, queue: number): boolean => (d.memory.readU16LE(d.queues[queue]!.config.deviceAddr) & USED_F_NO_NOTIFY) !== 0;
const availEvent = (d: FakeDriver, queue: number): number => {
  const q = d.queues[queue]!;
  return d.memory.readU16LE(q.config.deviceAddr + 4 + 8 * q.size);
};

function fsRig(features = VIRTIO_F_VERSION_1, lazyForgets = false): { device: FsDevice; d: FakeDriver; post: (unique: number) => number } {
  const device = new FsDevice(echo, { tag: 't', log: () => {}, lazyForgets });
  const d = fakeDriver(2, 64, features);
  device.activate(d.context);
  const post = (unique: number): number => d.queues[1]!.post([{ length: 56, writable: false, data: getattr(unique) }, { length: 16, writable: true }]).head;
  return { device, d, post };
}

test('busy polling: kicks stay off while the ring is watched; chains found without a kick are served; stopping turns kicks back on', () => {
  const { device, d, post } = fsRig();
  const q = d.queues[1]!;
  // Without polling a run ends with notifications on (the driver must kick).
  post(1);
  device.notify(1);
  assert.equal(q.takeUsed().length, 1);
  assert.ok(!noNotify(d, 1));
  device.startPolling();
  post(2);
  device.notify(1);
  assert.equal(q.takeUsed().length, 1);
  assert.ok(noNotify(d, 1), 'the driver is told not to kick while the thread watches the ring');
  assert.equal(device.hasAvailable(), false);
  // Posted without a kick: found in memory and served.
  const head = post(3);
  assert.equal(device.hasAvailable(), true);
  device.pollQueues();
  assert.deepEqual(q.takeUsed().map((u) => u.id), [head]);
  assert.equal(device.hasAvailable(), false);
  assert.deepEqual(d.notified, [1, 1, 1], 'every served request still gets its interrupt');
  assert.equal(device.stopPolling(), false, 'nothing raced the stop');
  assert.ok(!noNotify(d, 1), 'kicks are back on');
  // A chain posted just before the stop (so without a kick) is reported, then served.
  device.startPolling();
  post(4);
  device.notify(1);
  q.takeUsed();
  post(5);
  assert.equal(device.stopPolling(), true);
  device.pollQueues();
  assert.equal(q.takeUsed().length, 1);
  assert.equal(device.stats.requests, 5);
});

test('busy polling with EVENT_IDX: avail_event stays behind while polling, and catches up on stop', () => {
  const { device, d, post } = fsRig(VIRTIO_F_VERSION_1 | VIRTIO_F_EVENT_IDX);
  post(1);
  device.notify(1);
  assert.equal(availEvent(d, 1), 1, 'without polling the driver is asked to kick for the next chain');
  device.startPolling();
  post(2);
  device.notify(1);
  post(3);
  device.pollQueues();
  assert.equal(d.queues[1]!.takeUsed().length, 3);
  assert.equal(availEvent(d, 1), 1, 'no kick asked for while polling');
  assert.equal(device.stopPolling(), false);
  assert.equal(availEvent(d, 1), 3);
});

test('busy polling goes through the common drain loop too (a device without its own)', () => {
  const rng = new RngDevice({ log: () => {} });
  const d = fakeDriver(1, 16, VIRTIO_F_VERSION_1);
  rng.activate(d.context);
  const q = d.queues[0]!;
  rng.startPolling();
  q.post([{ length: 32, writable: true }]);
  rng.notify(0);
  assert.deepEqual(q.takeUsed().map((u) => u.length), [32]);
  assert.ok(noNotify(d, 0));
  q.post([{ length: 8, writable: true }]);
  assert.equal(rng.hasAvailable(), true);
  rng.pollQueues();
  assert.deepEqual(q.takeUsed().map((u) => u.length), [8]);
  assert.equal(rng.stopPolling(), false);
  assert.ok(!noNotify(d, 0));
});

test('busy polling leaves a lazy-FORGET hiprio ring quiet (settleForgets gives it its kicks back)', () => {
  const { device, d } = fsRig(VIRTIO_F_VERSION_1, true);
  device.startPolling();
  d.queues[0]!.post([{ length: 48, writable: false, data: forget(7) }]);
  device.notify(0);
  assert.equal(d.queues[0]!.takeUsed().length, 1);
  assert.equal(device.stopPolling(), false);
  assert.ok(noNotify(d, 0), 'hiprio stays quiet: its FORGETs are read at every wake-up');
  assert.ok(!noNotify(d, 1));
  device.settleForgets();
  assert.ok(!noNotify(d, 0));
});

test('busy polling: a paused queue is not watched, and a lying avail index costs NEEDS_RESET, not an exception', () => {
  const { device, d, post } = fsRig();
  device.startPolling();
  post(1);
  assert.equal(device.quiesce(1), undefined);
  assert.equal(device.hasAvailable(), false, 'a queue being stopped is left alone');
  device.pollQueues();
  assert.equal(d.queues[1]!.takeUsed().length, 0);

  const hostile = fsRig();
  hostile.device.startPolling();
  // avail idx more than a ring ahead of the device.
  hostile.d.memory.writeU16LE(hostile.d.queues[1]!.config.driverAddr + 2, 1000);
  assert.equal(hostile.device.hasAvailable(), false);
  assert.equal(hostile.device.needsReset, true);
  assert.equal(hostile.d.resets.length, 1);
  hostile.device.pollQueues();
  assert.equal(hostile.device.stopPolling(), false);
});
