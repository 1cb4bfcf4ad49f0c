// The queue thread's adaptive busy-poll window: it grows (doubling from 10 us) while the next
// request comes within the longest window plus the kick and wake-up allowance (twice the
// window in all), shrinks (halving, then off) when it does not, and stays off when busy polling
// is off.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PollWindow } from '../../src/vhost-user/poll-window.js';

test('poll window: grows while requests come soon, shrinks to off when they do not', () => {
  const w = new PollWindow(200);
  assert.equal(w.us, 0, 'no spinning before the first request');
  const grown: number[] = [];
  for (let i = 0; i < 6; i++) {
    w.woke(150);
    grown.push(w.us);
  }
  assert.deepEqual(grown, [10, 20, 40, 80, 160, 200]);
  w.woke(400);
  assert.equal(w.us, 200, 'a wait of twice the longest window (the window plus kick and wake-up) still counts as soon');
  w.woke(401);
  assert.equal(w.us, 100, 'a longer one does not');
  w.woke(400);
  const shrunk: number[] = [];
  for (let i = 0; i < 6; i++) {
    w.woke(5000);
    shrunk.push(w.us);
  }
  assert.deepEqual(shrunk, [100, 50, 25, 12.5, 0, 0]);
});

test('poll window: hits and misses are counted, and off means off', () => {
  const w = new PollWindow(100);
  w.hit();
  w.hit();
  w.missed(0.05);
  assert.equal(w.hits, 2);
  assert.equal(w.misses, 1);
  assert.equal(w.missedMs, 0.05);
  const off = new PollWindow(0);
  off.woke(1);
  assert.equal(off.us, 0);
  assert.throws(() => new PollWindow(-1), RangeError);
  assert.throws(() => new PollWindow(Number.NaN), RangeError);
});
