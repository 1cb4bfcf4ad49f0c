// What a device sees of a virtqueue, split or packed: the same calls drive both layouts, so a
// device model does not care which one the driver negotiated (VIRTIO_F_RING_PACKED).
import type { GuestMemory } from '../../memory/guest-memory.js';
import type { DescriptorChain } from './descriptor-chain.js';
import { VIRTIO_F_RING_PACKED, hasFeature } from './features.js';
import { PackedQueue } from './packed-queue.js';
import { SplitQueue, type QueueStart } from './split-queue.js';

export interface VirtQueue {
  readonly size: number;
  /** Ring position for GET_VRING_BASE / snapshots (packed: index | wrap counter << 15). */
  readonly nextAvail: number;
  readonly nextUsed: number;
  /** Chains available now (packed: 1 if the next descriptor is available, else 0). */
  pending(): number;
  /** Reads the next available chain; false if none. Throws QueueViolation. */
  pop(chain: DescriptorChain): boolean;
  /** Puts back the most recently popped chain (may be repeated). */
  undoPop(): void;
  /** Returns a chain (its `head` token) with the bytes written into it. */
  pushUsed(head: number, written: number): void;
  needsNotification(): boolean;
  enableNotifications(): boolean;
  disableNotifications(): void;
}

/** A split or packed queue, as the negotiated features say. Throws QueueViolation. */
export function createQueue(config: QueueStart, memory: GuestMemory, features: bigint): VirtQueue {
  return hasFeature(features, VIRTIO_F_RING_PACKED) ? new PackedQueue(config, memory, features) : new SplitQueue(config, memory, features);
}
