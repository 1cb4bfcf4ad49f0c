// The split virtqueue against a fake driver: well-formed chains round-trip exactly, every
// spec MUST about descriptors has a negative test, and random (hostile) rings only ever yield
// in-memory chains or a QueueViolation.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { DescriptorChain } from '../../src/virtio/queue/descriptor-chain.js';
import { QueueViolation, type QueueViolationCode } from '../../src/virtio/queue/errors.js';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1 } from '../../src/virtio/queue/features.js';
import { SplitQueue } from '../../src/virtio/queue/split-queue.js';
import { fakeDriver, maskSomeDescriptors } from './fake-driver.js';

const ALL = VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC | VIRTIO_F_EVENT_IDX;

function violation(code: QueueViolationCode): (error: unknown) => boolean {
  return (error: unknown) => error instanceof QueueViolation && error.code === code;
}

test('well-formed chains (direct and indirect) come out exactly as posted', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ readable: fc.array(fc.integer({ min: 0, max: 3000 }), { maxLength: 5 }), writable: fc.array(fc.integer({ min: 0, max: 3000 }), { maxLength: 5 }), indirect: fc.boolean() }), { minLength: 1, maxLength: 20 }),
      (requests) => {
        const driver = fakeDriver(1, 64, ALL);
        const fq = driver.queues[0]!;
        const queue = new SplitQueue(fq.config, driver.memory, ALL);
        const chain = new DescriptorChain(64);
        let round = 0;
        for (const r of requests) {
          const buffers = [...r.readable.map((length) => ({ length, writable: false })), ...r.writable.map((length) => ({ length, writable: true }))];
          if (buffers.length === 0) continue;
          const posted = fq.post(buffers, { indirect: r.indirect });
          assert.equal(queue.pop(chain), true);
          assert.equal(chain.head, posted.head);
          assert.equal(chain.count, buffers.length);
          assert.equal(chain.readableCount, r.readable.length);
          assert.equal(chain.readableBytes, r.readable.reduce((a, b) => a + b, 0));
          assert.equal(chain.writableBytes, r.writable.reduce((a, b) => a + b, 0));
          buffers.forEach((b, i) => {
            assert.equal(chain.lengths[i], b.length);
            assert.equal(chain.addresses[i], posted.addresses[i]);
          });
          queue.pushUsed(chain.head, round);
          const used = fq.takeUsed();
          assert.deepEqual(used, [{ id: posted.head, length: round }]);
          round++;
        }
        assert.equal(queue.pop(chain), false);
      },
    ),
    { numRuns: 200 },
  );
});

test('chain data helpers copy across segment boundaries', () => {
  const driver = fakeDriver(1, 16, ALL);
  const fq = driver.queues[0]!;
  const queue = new SplitQueue(fq.config, driver.memory, ALL);
  const chain = new DescriptorChain(16);
  fq.post([
    { length: 3, writable: false, data: Uint8Array.of(1, 2, 3) },
    { length: 2, writable: false, data: Uint8Array.of(4, 5) },
    { length: 4, writable: true },
    { length: 4, writable: true },
  ]);
  assert.ok(queue.pop(chain));
  const out = new Uint8Array(4);
  assert.equal(chain.readFrom(driver.memory, 1, out), 4);
  assert.deepEqual([...out], [2, 3, 4, 5]);
  assert.equal(chain.readFrom(driver.memory, 4, out), 1);
  assert.equal(chain.writeTo(driver.memory, 2, Uint8Array.of(9, 8, 7, 6, 5, 4, 3)), 6);
  const seen: number[] = [];
  chain.forEachSlice(driver.memory, true, 0, 8, (bytes) => seen.push(...bytes));
  assert.deepEqual(seen, [0, 0, 9, 8, 7, 6, 5, 4]);
});

/** A queue of 8 at 0 whose descriptors the test writes by hand. */
function manual(features = ALL, memoryBytes = 1 << 20) {
  const memory = GuestMemory.anonymous([{ start: 0, size: memoryBytes }]);
  const size = 8;
  const config = { size, descAddr: 0x1000, driverAddr: 0x2000, deviceAddr: 0x3000 };
  const queue = new SplitQueue(config, memory, features);
  let availIdx = 0;
  const desc = (i: number, addr: number, len: number, flags: number, next: number, table = config.descAddr) => {
    memory.writeU64LE(table + 16 * i, BigInt(addr));
    memory.writeU32LE(table + 16 * i + 8, len);
    memory.writeU16LE(table + 16 * i + 12, flags);
    memory.writeU16LE(table + 16 * i + 14, next);
  };
  const publish = (head: number) => {
    memory.writeU16LE(config.driverAddr + 4 + 2 * (availIdx % size), head);
    availIdx = (availIdx + 1) & 0xffff;
    memory.writeU16LE(config.driverAddr + 2, availIdx);
  };
  return { memory, queue, desc, publish, config, chain: new DescriptorChain(size) };
}

const NEXT = 1;
const WRITE = 2;
const INDIRECT = 4;

test('§2.7.5: a head index >= queue size is a violation', () => {
  const m = manual();
  m.publish(8);
  assert.throws(() => m.queue.pop(m.chain), violation('descriptor-index'));
});

test('§2.7.5: a next index >= queue size is a violation', () => {
  const m = manual();
  m.desc(0, 0x8000, 16, NEXT, 200);
  m.publish(0);
  assert.throws(() => m.queue.pop(m.chain), violation('descriptor-index'));
});

test('§2.7.5.3.1: a looping chain is cut at queue size', () => {
  const m = manual();
  m.desc(0, 0x8000, 16, NEXT, 1);
  m.desc(1, 0x8000, 16, NEXT, 0);
  m.publish(0);
  assert.throws(() => m.queue.pop(m.chain), violation('chain-too-long'));
});

test('§2.7.6: avail idx more than a queue ahead is a violation', () => {
  const m = manual();
  m.memory.writeU16LE(m.config.driverAddr + 2, 9);
  assert.throws(() => m.queue.pop(m.chain), violation('avail-index-jump'));
});

test('buffers outside guest RAM are violations (also past 2^53 and straddling the end)', () => {
  for (const [addr, len] of [[0x100000, 1], [0xff000, 0x2000], [2 ** 60, 1]] as const) {
    const m = manual();
    m.desc(0, 0, 0, 0, 0);
    m.memory.writeU64LE(m.config.descAddr, BigInt(addr));
    m.memory.writeU32LE(m.config.descAddr + 8, len);
    m.publish(0);
    assert.throws(() => m.queue.pop(m.chain), violation('buffer-out-of-memory'), `0x${addr.toString(16)}+${len}`);
  }
});

test('§2.7.4.2: a readable descriptor after a writable one is a violation', () => {
  const m = manual();
  m.desc(0, 0x8000, 16, NEXT | WRITE, 1);
  m.desc(1, 0x9000, 16, 0, 0);
  m.publish(0);
  assert.throws(() => m.queue.pop(m.chain), violation('readable-after-writable'));
});

test('§2.7.5.3: indirect descriptors need VIRTIO_F_INDIRECT_DESC', () => {
  const m = manual(VIRTIO_F_VERSION_1);
  m.desc(0, 0x8000, 32, INDIRECT, 0);
  m.publish(0);
  assert.throws(() => m.queue.pop(m.chain), violation('indirect-not-negotiated'));
});

test('§2.7.5.3.1: INDIRECT together with NEXT is a violation', () => {
  const m = manual();
  m.desc(0, 0x8000, 32, INDIRECT | NEXT, 1);
  m.publish(0);
  assert.throws(() => m.queue.pop(m.chain), violation('indirect-with-next'));
});

test('§2.7.5.3.1: an indirect table inside an indirect table is a violation', () => {
  const m = manual();
  m.desc(0, 0x8000, 32, INDIRECT, 0);
  m.desc(0, 0x9000, 16, NEXT, 1, 0x8000);
  m.desc(1, 0xa000, 16, INDIRECT, 0, 0x8000);
  m.publish(0);
  assert.throws(() => m.queue.pop(m.chain), violation('nested-indirect'));
});

test('indirect table length must be a non-zero multiple of 16, at most 1024 entries, in RAM', () => {
  for (const [len, addr, code] of [[24, 0x8000, 'indirect-table-size'], [0, 0x8000, 'indirect-table-size'], [16 * 1025, 0x8000, 'indirect-table-size'], [32, 0xffff0 + 0x10, 'buffer-out-of-memory']] as const) {
    const m = manual();
    m.desc(0, addr, len, INDIRECT, 0);
    m.publish(0);
    assert.throws(() => m.queue.pop(m.chain), violation(code), `${len}@${addr}`);
  }
});

test('an indirect table longer than the queue (as Linux makes them) is accepted and read whole', () => {
  const m = manual();
  for (let i = 0; i < 20; i++) m.desc(i, 0x9000 + 64 * i, 64, i < 19 ? NEXT : WRITE, i + 1, 0x8000);
  m.desc(18, 0x9000 + 64 * 18, 64, NEXT | WRITE, 19, 0x8000);
  m.desc(0, 0x8000, 16 * 20, INDIRECT, 0);
  m.publish(0);
  const chain = new DescriptorChain(2);
  assert.ok(m.queue.pop(chain));
  assert.equal(chain.count, 20);
  assert.equal(chain.readableCount, 18);
  assert.equal(chain.addresses[19], 0x9000 + 64 * 19);
});

test('a loop inside an indirect table is cut at the table size', () => {
  const m = manual();
  m.desc(0, 0x8000, 32, INDIRECT, 0);
  m.desc(0, 0x9000, 16, NEXT, 1, 0x8000);
  m.desc(1, 0x9000, 16, NEXT, 0, 0x8000);
  m.publish(0);
  assert.throws(() => m.queue.pop(m.chain), violation('chain-too-long'));
});

test('§2.7.5: a chain of 4 GiB or more in total is a violation', () => {
  const big = 2.25 * 2 ** 30;
  const m = manual(ALL, big + 0x10000);
  m.desc(0, 0x10000, 0xffff_0000, NEXT, 1);
  m.desc(1, 0x10000, 0x1000_0000, 0, 0);
  m.publish(0);
  assert.throws(() => m.queue.pop(m.chain), violation('buffer-out-of-memory'));
  m.desc(2, 0x10000, 0x8000_0000, NEXT, 3);
  m.desc(3, 0x10000, 0x8000_0000, 0, 0);
  m.publish(2);
  assert.throws(() => m.queue.pop(m.chain), violation('chain-too-large'));
});

test('rings must be aligned and inside guest RAM (§2.7)', () => {
  const memory = GuestMemory.anonymous([{ start: 0, size: 0x10000 }]);
  assert.throws(() => new SplitQueue({ size: 8, descAddr: 0x1008, driverAddr: 0x2000, deviceAddr: 0x3000 }, memory, ALL), violation('ring-misaligned'));
  assert.throws(() => new SplitQueue({ size: 8, descAddr: 0x1000, driverAddr: 0x2000, deviceAddr: 0xfff0 }, memory, ALL), violation('ring-out-of-memory'));
  assert.throws(() => new SplitQueue({ size: 12, descAddr: 0x1000, driverAddr: 0x2000, deviceAddr: 0x3000 }, memory, ALL), violation('bad-queue-size'));
  assert.throws(() => new SplitQueue({ size: 65536, descAddr: 0x1000, driverAddr: 0x2000, deviceAddr: 0x3000 }, memory, ALL), violation('bad-queue-size'));
});

test('hostile rings: random descriptor tables and avail rings yield in-RAM chains or a QueueViolation, never anything else', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 16 * 16, maxLength: 16 * 16 }),
      fc.uint8Array({ minLength: 2 * 16, maxLength: 2 * 16 }),
      fc.integer({ min: 0, max: 0xffff }),
      fc.constantFrom(ALL, VIRTIO_F_VERSION_1),
      fc.uint8Array({ minLength: 512, maxLength: 512 }),
      (table, ring, availIdx, features, indirectArea) => {
        const memory = GuestMemory.anonymous([{ start: 0, size: 0x10000 }]);
        maskSomeDescriptors(table, 16);
        memory.write(0x1000, table);
        memory.write(0x2004, ring);
        memory.write(0x8000, indirectArea);
        memory.writeU16LE(0x2002, availIdx);
        const queue = new SplitQueue({ size: 16, descAddr: 0x1000, driverAddr: 0x2000, deviceAddr: 0x3000 }, memory, features);
        const chain = new DescriptorChain(16);
        for (let n = 0; n < 40; n++) {
          let got: boolean;
          try {
            got = queue.pop(chain);
          } catch (error) {
            assert.ok(error instanceof QueueViolation, `unexpected ${String(error)}`);
            return;
          }
          if (!got) return;
          assert.ok(chain.count <= 16 + 1024);
          for (let i = 0; i < chain.count; i++) assert.ok(memory.isValidRange(chain.addresses[i]!, chain.lengths[i]!));
          queue.pushUsed(chain.head, 0);
        }
      },
    ),
    { numRuns: 1000 },
  );
});

test('VIRTIO_F_EVENT_IDX: interrupts follow used_event; avail_event is published on re-enable', () => {
  const driver = fakeDriver(1, 16, ALL);
  const fq = driver.queues[0]!;
  const queue = new SplitQueue(fq.config, driver.memory, ALL);
  const chain = new DescriptorChain(16);
  const complete = () => {
    assert.ok(queue.pop(chain));
    queue.pushUsed(chain.head, 0);
  };
  fq.post([{ length: 8, writable: true }]);
  complete();
  assert.equal(queue.needsNotification(), true, 'first notification always goes out');
  fq.setUsedEvent(3); // interrupt me when entry 3 is used (used idx passes 3)
  for (let i = 0; i < 2; i++) {
    fq.post([{ length: 8, writable: true }]);
    complete();
    assert.equal(queue.needsNotification(), false, `used idx ${queue.nextUsed}`);
  }
  fq.post([{ length: 8, writable: true }]);
  complete();
  assert.equal(queue.needsNotification(), true, 'used idx crossed used_event');
  assert.equal(queue.enableNotifications(), false);
  assert.equal(driver.memory.readU16LE(fq.config.deviceAddr + 4 + 8 * 16), 4, 'avail_event = next avail index');
  fq.post([{ length: 8, writable: true }]);
  assert.equal(queue.enableNotifications(), true, 'a buffer that arrived meanwhile is reported');
});

test('without EVENT_IDX: NO_INTERRUPT suppresses, NO_NOTIFY is toggled', () => {
  const driver = fakeDriver(1, 16, VIRTIO_F_VERSION_1);
  const fq = driver.queues[0]!;
  const queue = new SplitQueue(fq.config, driver.memory, VIRTIO_F_VERSION_1);
  queue.disableNotifications();
  assert.equal(driver.memory.readU16LE(fq.config.deviceAddr) & 1, 1);
  assert.equal(queue.enableNotifications(), false);
  assert.equal(driver.memory.readU16LE(fq.config.deviceAddr) & 1, 0);
  assert.equal(queue.needsNotification(), true);
  driver.memory.writeU16LE(fq.config.driverAddr, 1);
  assert.equal(queue.needsNotification(), false);
});

test('ring indices wrap at 2^16 and a queue can start mid-way (vhost-user SET_VRING_BASE)', () => {
  const driver = fakeDriver(1, 4, ALL);
  const fq = driver.queues[0]!;
  // Advance the fake driver's indices to just below the wrap.
  for (let i = 0; i < 0xfffe; i++) fq.publish(0);
  driver.memory.writeU16LE(fq.config.deviceAddr + 2, 0xfffe);
  fq.takeUsed();
  const queue = new SplitQueue({ ...fq.config, nextAvail: 0xfffe, nextUsed: 0xfffe }, driver.memory, ALL);
  const chain = new DescriptorChain(4);
  for (let i = 0; i < 4; i++) {
    fq.post([{ length: 4, writable: true }]);
    assert.ok(queue.pop(chain));
    queue.pushUsed(chain.head, 4);
  }
  assert.equal(queue.nextAvail, 2);
  assert.equal(fq.takeUsed().length, 4);
});
