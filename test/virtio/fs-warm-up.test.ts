// The virtio-fs JIT warm-up (fs-warm-up.ts) drives a real FsDevice, FuseHandler and UnionFs
// through a split ring in memfd-backed memory: every reply is the one its mix expects, the data
// goes the zero-copy way (as a Linux driver's READ/WRITE would), two devices share the rounds,
// the scratch directories are gone afterwards, and it stops as soon as it is told to.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { SyncDataIo } from '../../src/fs/data-io.js';
import { FuseHandler, UnionFs, configFromFlags } from '../../src/fs/index.js';
import { FsDevice } from '../../src/virtio/devices/fs/fs-device.js';
import { warmUpFs, type WarmUpDeviceFactory } from '../../src/virtio/devices/fs/fs-warm-up.js';

function factory(devices: FsDevice[]): WarmUpDeviceFactory {
  return (directory) => {
    const union = new UnionFs(configFromFlags([], [`/=${directory}`]));
    const handler = new FuseHandler(union, { dataIo: new SyncDataIo(), writebackCache: false });
    const device = new FsDevice(handler, { tag: 'warm', lazyForgets: true, log: () => {} });
    devices.push(device);
    return { device, close: () => { handler.closeAll(); union.close(); } };
  };
}

test('fs warm-up: every reply as expected, data zero-copy, the scratch directory removed', () => {
  const parent = mkdtempSync(join(tmpdir(), 'novm-warm-up-test-'));
  try {
    const devices: FsDevice[] = [];
    const result = warmUpFs(factory(devices), { scratchParent: parent, rounds: 40, maxMs: 60_000 });
    assert.equal(result.firstUnexpected, '');
    assert.equal(result.unexpected, 0);
    assert.equal(result.rounds, 40);
    assert.ok(result.requests >= 40 * 15, `${result.requests} requests`);
    // Two devices (so call sites see more than one closure), the rounds alternating between them.
    assert.equal(devices.length, 2);
    const total = devices.reduce((sum, d) => sum + d.stats.requests + d.stats.forgets, 0);
    assert.equal(total, result.requests);
    for (const device of devices) {
      assert.equal(device.stats.zeroCopyWrites, 20);
      assert.equal(device.stats.zeroCopyReads, 20);
      assert.equal(device.isActive, false, 'reset afterwards');
    }
    assert.deepEqual(readdirSync(parent), []);
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
});

test('fs warm-up: stops between rounds when told, and a device that fails to build is reported, not thrown', () => {
  const parent = mkdtempSync(join(tmpdir(), 'novm-warm-up-test-'));
  try {
    let asked = 0;
    const stopped = warmUpFs(factory([]), { scratchParent: parent, rounds: 1000, maxMs: 60_000, shouldStop: () => ++asked > 2 });
    assert.equal(stopped.rounds, 2);
    assert.equal(stopped.unexpected, 0);
    const failed = warmUpFs(() => { throw new Error('no device'); }, { scratchParent: parent, rounds: 10, maxMs: 1000 });
    assert.equal(failed.rounds, 0);
    assert.match(failed.firstUnexpected, /no device/);
    assert.deepEqual(readdirSync(parent), []);
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
});
