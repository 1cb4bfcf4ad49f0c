// FsDevice's run budget (requestsPerRun): a run yields after that many requests with the rest
// left in the ring and notifications off; resumeQueues() serves them in order; a queue being
// stopped is not resumed. (The queue thread relies on this to answer commands in bounded time.)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FsDevice } from '../../src/virtio/devices/fs/fs-device.js';
import { VIRTIO_F_VERSION_1 } from '../../src/virtio/queue/features.js';
import { fakeDriver } from './fake-driver.js';
import { echoHandler as echo, echoRequest as request } from './fs-echo.js';

test('FsDevice requestsPerRun: runs yield, resumeQueues finishes the ring in order, a stopping queue is not resumed', () => {
  const device = new FsDevice(echo, { tag: 't', requestsPerRun: 8, log: () => {} });
  const d = fakeDriver(2, 64, VIRTIO_F_VERSION_1);
  device.activate(d.context);
  const q = d.queues[1]!;
  const heads: number[] = [];
  for (let i = 0; i < 20; i++) heads.push(q.post([{ length: 40, writable: false, data: request(i) }, { length: 16, writable: true }]).head);
  device.notify(1);
  assert.equal(q.takeUsed().length, 8);
  assert.equal(device.hasDeferredWork, true);
  device.resumeQueues();
  device.resumeQueues();
  const rest = q.takeUsed();
  assert.deepEqual(rest.map((u) => u.id), heads.slice(8, 20));
  assert.equal(device.hasDeferredWork, false);
  assert.equal(device.stats.requests, 20);
  // A stop (quiesce) while requests wait: nothing more is taken, and nothing asks to resume.
  for (let i = 0; i < 20; i++) q.post([{ length: 40, writable: false, data: request(100 + i) }, { length: 16, writable: true }]);
  device.notify(1);
  assert.equal(q.takeUsed().length, 8);
  assert.equal(device.quiesce(1), undefined);
  assert.equal(device.hasDeferredWork, false);
  device.resumeQueues();
  assert.equal(q.takeUsed().length, 0);
  assert.equal(device.queuePosition(1)?.nextAvail, 28);
});

test('FsDevice without a budget serves the whole ring in one run (in-process default)', () => {
  const device = new FsDevice(echo, { tag: 't', log: () => {} });
  const d = fakeDriver(2, 64, VIRTIO_F_VERSION_1);
  device.activate(d.context);
  const q = d.queues[1]!;
  for (let i = 0; i < 30; i++) q.post([{ length: 40, writable: false, data: request(i) }, { length: 16, writable: true }]);
  device.notify(1);
  assert.equal(q.takeUsed().length, 30);
  assert.equal(device.hasDeferredWork, false);
});
