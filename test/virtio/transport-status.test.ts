// The device status transitions table (virtio 1.2 section 3.1.1), exhaustively: every legal
// current status against every byte a driver could write.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DeviceStatus } from '../../src/virtio/device.js';
import { VALID_STATUS_TRANSITIONS, classifyStatusWrite } from '../../src/virtio/transport/device-status.js';

const LEGAL = [0, 1, 3, 11, 15];

test('only the table, reset, FAILED and rewrites are accepted', () => {
  let accepted = 0;
  for (const current of LEGAL) {
    for (let written = 0; written < 256; written++) {
      if ((written & DeviceStatus.DeviceNeedsReset) !== 0) continue; // masked by the transport
      const step = classifyStatusWrite(current, written);
      if (written === 0) assert.equal(step.kind, 'reset');
      else if (written === current) assert.equal(step.kind, 'unchanged');
      else if (written === (current | DeviceStatus.Failed)) assert.equal(step.kind, 'failed');
      else if (VALID_STATUS_TRANSITIONS.some(([f, t]) => f === current && t === written)) {
        assert.notEqual(step.kind, 'invalid');
        accepted++;
      } else assert.equal(step.kind, 'invalid', `0x${current.toString(16)} -> 0x${written.toString(16)}`);
    }
  }
  assert.equal(accepted, 4, 'each forward step of 3.1.1 exactly once');
  // After FAILED only a reset (or the same value) is accepted.
  const failed = 3 | DeviceStatus.Failed;
  assert.equal(classifyStatusWrite(failed, 11 | DeviceStatus.Failed).kind, 'invalid');
  assert.equal(classifyStatusWrite(failed, 0).kind, 'reset');
  // Skipping a step (ACK straight to FEATURES_OK, DRIVER_OK without FEATURES_OK) is refused.
  assert.equal(classifyStatusWrite(1, 9).kind, 'invalid');
  assert.equal(classifyStatusWrite(3, 7).kind, 'invalid');
  // Clearing bits other than by reset is refused.
  assert.equal(classifyStatusWrite(15, 11).kind, 'invalid');
});
