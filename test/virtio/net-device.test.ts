import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import type { ActivationContext } from '../../src/virtio/device.js';
import {
  NET_HEADER_SIZE, NetDevice, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_MRG_RXBUF,
} from '../../src/virtio/devices/net/net-device.js';
import { TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN } from '../../src/virtio/devices/net/tap-port.js';
import { FakeTap } from './net-fake-tap.js';
import { FakeVirtqueue } from './net-fake-virtqueue.js';

const VERSION_1 = 1n << 32n;

interface Rig {
  device: NetDevice;
  tap: FakeTap;
  rx: FakeVirtqueue;
  tx: FakeVirtqueue;
  memory: GuestMemory;
  interrupts: number[];
  resets: string[];
}

function rig(features: bigint, offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN): Rig {
  const memory = GuestMemory.anonymous([{ start: 0, size: 4 << 20 }]);
  const tap = new FakeTap(offloads);
  const device = new NetDevice(tap, { mac: '52:54:00:12:34:56', log: () => {} });
  const rx = new FakeVirtqueue(memory, 256, 0x10000, 0x100000);
  const tx = new FakeVirtqueue(memory, 256, 0x20000, 0x200000);
  const interrupts: number[] = [];
  const resets: string[] = [];
  const context: ActivationContext = {
    memory,
    features: features | VERSION_1,
    queues: [rx.config, tx.config],
    notifyQueue: (q) => interrupts.push(q),
    notifyConfig: () => {},
    needsReset: (reason) => resets.push(reason),
  };
  device.activate(context);
  return { device, tap, rx, tx, memory, interrupts, resets };
}

function frame(length: number, seed: number): Uint8Array {
  const f = new Uint8Array(length);
  for (let i = NET_HEADER_SIZE; i < length; i++) f[i] = (i * 7 + seed) & 0xff;
  return f;
}

test('features follow what the tap accepts; config has the MAC and link up', () => {
  const full = new NetDevice(new FakeTap(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN), { mac: '52:54:00:12:34:56' });
  assert.ok((full.deviceFeatures & VIRTIO_NET_F_GUEST_TSO4) !== 0n);
  assert.ok((full.deviceFeatures & VIRTIO_NET_F_MRG_RXBUF) !== 0n);
  const bare = new NetDevice(new FakeTap(0));
  assert.equal(bare.deviceFeatures & (VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_TSO4), 0n);
  const config = new Uint8Array(8);
  full.readConfig(0, config);
  assert.deepEqual([...config], [0x52, 0x54, 0, 0x12, 0x34, 0x56, 1, 0]);
  assert.equal(bare.mac[0]! & 3, 2, 'random MAC is unicast and locally administered');
  assert.throws(() => new NetDevice(new FakeTap(0), { mac: 'zz:00' }), /not a MAC address/);
});

test('offloads are set from the negotiated features and cleared on reset', () => {
  const r = rig(VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_TSO4);
  assert.deepEqual(r.tap.offloadHistory, [TUN_F_CSUM | TUN_F_TSO4]);
  r.device.reset();
  assert.deepEqual(r.tap.offloadHistory, [TUN_F_CSUM | TUN_F_TSO4, 0]);
});

test('tx: a chain split over segments reaches the tap as one frame', () => {
  const r = rig(0n);
  const f = frame(200, 3);
  const a = r.tx.alloc(50, f.subarray(0, 50));
  const b = r.tx.alloc(150, f.subarray(50));
  const head = r.tx.post([{ addr: a, len: 50, writable: false }, { addr: b, len: 150, writable: false }]);
  r.device.notify(1);
  assert.equal(r.tap.outbound.length, 1);
  assert.deepEqual(r.tap.outbound[0], f);
  assert.deepEqual(r.tx.takeUsed(), [{ id: head, len: 0 }]);
  assert.deepEqual(r.interrupts, [1]);
  // A chain shorter than the header is dropped, not sent.
  r.tx.postReadable(new Uint8Array(4));
  r.device.notify(1);
  assert.equal(r.tap.outbound.length, 1);
  assert.equal(r.device.metrics.txDropped, 1);
});

test('rx without MRG_RXBUF: one buffer per frame, num_buffers = 1', () => {
  const r = rig(0n);
  const { head, addr } = r.rx.postWritable(1526);
  const f = frame(100, 9);
  r.tap.inject(f);
  assert.deepEqual(r.rx.takeUsed(), [{ id: head, len: 100 }]);
  const got = r.memory.read(addr, 100);
  assert.equal(got[10], 1);
  assert.deepEqual(got.subarray(NET_HEADER_SIZE), f.subarray(NET_HEADER_SIZE));
  assert.deepEqual(r.interrupts, [0]);
  assert.ok(r.tap.armed, 'the device re-armed after draining the tap');
});

test('rx with MRG_RXBUF spreads a frame over buffers and waits for more when short', () => {
  const r = rig(VIRTIO_NET_F_MRG_RXBUF);
  const first = r.rx.postWritable(100);
  const second = r.rx.postWritable(100);
  const f = frame(250, 1);
  r.tap.inject(f);
  assert.deepEqual(r.rx.takeUsed(), [], 'two buffers cannot hold 250 bytes: nothing used yet');
  assert.equal(r.tap.armed, false, 'no polling while the guest has no room');
  const third = r.rx.postWritable(100);
  r.device.notify(0);
  assert.deepEqual(r.rx.takeUsed(), [{ id: first.head, len: 100 }, { id: second.head, len: 100 }, { id: third.head, len: 50 }]);
  const header = r.memory.read(first.addr, NET_HEADER_SIZE);
  assert.equal(header[10], 3, 'num_buffers');
  const joined = new Uint8Array(250);
  joined.set(r.memory.read(first.addr, 100), 0);
  joined.set(r.memory.read(second.addr, 100), 100);
  joined.set(r.memory.read(third.addr, 50), 200);
  assert.deepEqual(joined.subarray(NET_HEADER_SIZE), f.subarray(NET_HEADER_SIZE));
  assert.equal(r.device.metrics.rxFrames, 1);
  assert.ok(r.tap.armed);
});

test('adversarial rings: nothing throws, a broken ring means needs-reset, and the device recovers', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ addr: fc.oneof(fc.integer({ min: 0, max: 0x400000 }), fc.constant(0xffff_ffff_ff)), len: fc.integer({ min: 0, max: 0x30000 }), flags: fc.integer({ min: 0, max: 7 }), next: fc.integer({ min: 0, max: 300 }) }), { minLength: 1, maxLength: 16 }),
      fc.integer({ min: 0, max: 0xffff }),
      fc.boolean(),
      fc.constantFrom(0n, VIRTIO_NET_F_MRG_RXBUF),
      (descs, availIdx, rxSide, features) => {
        const r = rig(features);
        const q = rxSide ? r.rx : r.tx;
        descs.forEach((d, i) => {
          const at = q.descAddr + 16 * i;
          r.memory.writeU64LE(at, BigInt(d.addr));
          r.memory.writeU32LE(at + 8, d.len);
          r.memory.writeU16LE(at + 12, d.flags);
          r.memory.writeU16LE(at + 14, d.next);
        });
        for (let i = 0; i < 8; i++) r.memory.writeU16LE(q.availAddr + 4 + 2 * i, (i * 37 + availIdx) % 300);
        r.memory.writeU16LE(q.availAddr + 2, availIdx);
        if (rxSide) r.tap.inject(frame(3000, 5));
        else r.device.notify(1);
        r.device.notify(0);
        assert.ok(r.resets.length <= 1, 'needs-reset reported once');
        // A fresh activation on sane rings works again.
        const fresh = rig(features);
        fresh.rx.postWritable(4096);
        fresh.tap.inject(frame(64, 2));
        assert.equal(fresh.rx.takeUsed().length, 1);
      },
    ),
    { numRuns: 200 },
  );
});
