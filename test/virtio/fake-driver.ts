// A fake virtio driver for tests: lays out split rings in fake guest memory, posts chains
// (direct or through an indirect table) and reads the used ring back. It can also be made to
// lie (raw descriptor writes) for hostile-driver tests.
import { GuestMemory } from '../../src/memory/guest-memory.js';
import type { ActivationContext } from '../../src/virtio/device.js';
import { SplitRingDriver as FakeQueue, align } from '../../src/virtio/queue/split-ring-driver.js';

export { SplitRingDriver as FakeQueue, type ChainBuffer as Buffer, type UsedElement } from '../../src/virtio/queue/split-ring-driver.js';

export interface FakeDriver {
  readonly memory: GuestMemory;
  readonly queues: FakeQueue[];
  readonly notified: number[];
  readonly resets: string[];
  readonly context: ActivationContext;
}

/** 4 MiB of fake RAM at 0 with `count` queues of `size` and a shared data area. */
export function fakeDriver(count: number, size: number, features: bigint, memoryBytes = 4 << 20): FakeDriver {
  const memory = GuestMemory.anonymous([{ start: 0, size: memoryBytes }]);
  const queues: FakeQueue[] = [];
  const ringBytes = FakeQueue.bytesFor(size);
  const dataStart = align(count * ringBytes, 4096);
  const perQueue = Math.floor((memoryBytes - dataStart) / count);
  for (let i = 0; i < count; i++) {
    queues.push(new FakeQueue(memory, size, i * ringBytes, dataStart + i * perQueue, dataStart + (i + 1) * perQueue));
  }
  const notified: number[] = [];
  const resets: string[] = [];
  const context: ActivationContext = {
    memory,
    features,
    queues: queues.map((q) => q.config),
    notifyQueue: (i) => notified.push(i),
    notifyConfig: () => notified.push(-1),
    needsReset: (reason) => resets.push(reason),
  };
  return { memory, queues, notified, resets, context };
}


/** A virtio-console control message (virtio 1.2 5.3.6.2: id u32, event u16, value u16). */
export function consoleControl(id: number, event: number, value: number): Uint8Array {
  const m = new Uint8Array(8);
  const v = new DataView(m.buffer);
  v.setUint32(0, id, true);
  v.setUint16(4, event, true);
  v.setUint16(6, value, true);
  return m;
}

/** Points the descriptors of a random 16-byte-descriptor ring whose first byte is odd at plausible
 *  places (address below 0x20000, length below 0x2000), so hostile-ring tests reach past the
 *  first bounds check; the layout of addr and len is the same in split and packed rings. */
export function maskSomeDescriptors(ring: Uint8Array, count: number): void {
  const view = new DataView(ring.buffer, ring.byteOffset, ring.byteLength);
  for (let i = 0; i < count; i++) {
    if (ring[16 * i]! & 1) {
      view.setUint32(16 * i + 4, 0, true);
      view.setUint32(16 * i, view.getUint32(16 * i, true) & 0x1ffff, true);
      view.setUint32(16 * i + 8, view.getUint32(16 * i + 8, true) & 0x1fff, true);
    }
  }
}
