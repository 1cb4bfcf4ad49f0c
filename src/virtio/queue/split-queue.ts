// The device side of a split virtqueue (virtio 1.2 §2.7). Everything the driver wrote is
// treated as hostile: each number is bounded before use and a broken ring raises a
// QueueViolation, which the device turns into DEVICE_NEEDS_RESET. No allocation per request.
//
// Layout (§2.7.2): descriptor table of `size` 16-byte entries {addr u64, len u32, flags u16,
// next u16}; available ring {flags u16, idx u16, ring[size] u16, used_event u16}; used ring
// {flags u16, idx u16, ring[size] {id u32, len u32}, avail_event u16}.
import type { GuestMemory } from '../../memory/guest-memory.js';
import type { QueueConfig } from '../device.js';
import { DescriptorChain } from './descriptor-chain.js';
import { QueueViolation } from './errors.js';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, hasFeature } from './features.js';
import { fullFence } from './memory-fence.js';
import { checkArea, hex, readU64AsNumber } from './ring-memory.js';

const DESC_F_NEXT = 1;
const DESC_F_WRITE = 2;
const DESC_F_INDIRECT = 4;
const AVAIL_F_NO_INTERRUPT = 1;
const USED_F_NO_NOTIFY = 1;
const DESC_SIZE = 16;
/** §2.7: a split queue has at most 32768 entries. */
export const MAX_QUEUE_SIZE = 32768;
/**
 * Entries of one indirect table. §2.7.5.3.1 asks drivers to keep chains within the queue
 * size, but Linux sizes indirect tables from seg_max alone (a virtio-blk with seg_max 254 on a
 * 128-entry QEMU queue sends 153-entry tables), so tables are bounded like QEMU's
 * VIRTQUEUE_MAX_SIZE instead: 1024 entries.
 */
export const MAX_INDIRECT_ENTRIES = 1024;
/** §2.7.5: the total length of a chain's buffers fits in 32 bits (used.len is a u32). */
const MAX_CHAIN_BYTES = 0xffff_ffff;

/** A QueueConfig plus where the rings' indices stand (vhost-user SET_VRING_BASE, restore). */
export interface QueueStart extends QueueConfig {
  /** Next available-ring index the device will read (default: 0). */
  readonly nextAvail?: number;
  /** Next used-ring index the device will write (default: 0). */
  readonly nextUsed?: number;
}

export class SplitQueue {
  readonly size: number;
  private readonly descAddr: number;
  private readonly availAddr: number;
  private readonly usedAddr: number;
  private readonly eventIdx: boolean;
  private readonly indirect: boolean;
  private lastAvail: number;
  private usedIdx: number;
  /** used->idx when the driver was last notified (or told not to be): for EVENT_IDX. */
  private signalledUsed: number;
  private signalledValid = false;

  /** Throws QueueViolation if the rings do not lie in guest memory (§2.7.1 alignment rules). */
  constructor(config: QueueStart, private readonly memory: GuestMemory, features: bigint) {
    const { size } = config;
    if (!Number.isInteger(size) || size < 1 || size > MAX_QUEUE_SIZE || (size & (size - 1)) !== 0) {
      throw new QueueViolation('bad-queue-size', `queue size ${size} is not a power of 2 in [1, ${MAX_QUEUE_SIZE}]`);
    }
    this.size = size;
    this.eventIdx = hasFeature(features, VIRTIO_F_EVENT_IDX);
    this.indirect = hasFeature(features, VIRTIO_F_INDIRECT_DESC);
    this.descAddr = config.descAddr;
    this.availAddr = config.driverAddr;
    this.usedAddr = config.deviceAddr;
    checkArea(memory, 'descriptor table', this.descAddr, DESC_SIZE * size, 16);
    checkArea(memory, 'available ring', this.availAddr, 6 + 2 * size, 2);
    checkArea(memory, 'used ring', this.usedAddr, 6 + 8 * size, 4);
    this.lastAvail = (config.nextAvail ?? 0) & 0xffff;
    this.usedIdx = (config.nextUsed ?? 0) & 0xffff;
    this.signalledUsed = this.usedIdx;
  }

  /** Index of the next available-ring entry to consume (vhost-user GET_VRING_BASE). */
  get nextAvail(): number {
    return this.lastAvail;
  }

  get nextUsed(): number {
    return this.usedIdx;
  }

  /** Number of chains the driver has made available and the device has not consumed. */
  pending(): number {
    const availIdx = this.memory.readU16LE(this.availAddr + 2);
    const distance = (availIdx - this.lastAvail) & 0xffff;
    // §2.7.6: the driver can never be more than a ring ahead of the device.
    if (distance > this.size) throw new QueueViolation('avail-index-jump', `avail idx ${availIdx} is ${distance} ahead of ${this.lastAvail} (queue size ${this.size})`);
    return distance;
  }

  /**
   * Reads the next available chain into `chain` (it grows if the chain is longer).
   * Returns false if there is none. Throws QueueViolation for a malformed chain.
   */
  pop(chain: DescriptorChain): boolean {
    if (this.pending() === 0) return false;
    // The ring entry is read only after avail->idx: x86 does not reorder loads with loads.
    const head = this.memory.readU16LE(this.availAddr + 4 + 2 * (this.lastAvail % this.size));
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    this.readChain(head, chain);
    return true;
  }

  /** Puts back the chain most recently popped (a device that could not serve it yet). */
  undoPop(): void {
    this.lastAvail = (this.lastAvail - 1) & 0xffff;
  }

  private readChain(head: number, chain: DescriptorChain): void {
    const size = this.size;
    if (head >= size) throw new QueueViolation('descriptor-index', `head ${head} >= queue size ${size}`);
    chain.clear(head);
    const memory = this.memory;
    let tableAddr = this.descAddr;
    let tableSize = size;
    let index = head;
    let inIndirect = false;
    // Descriptors allowed in the table being walked: a longer walk is a loop (§2.7.5.3.1).
    let budget = size;
    let visited = 0;
    let total = 0;
    for (;;) {
      const d = tableAddr + DESC_SIZE * index;
      const addr = readU64AsNumber(memory, d);
      const len = memory.readU32LE(d + 8);
      const flags = memory.readU16LE(d + 12);
      const next = memory.readU16LE(d + 14);
      // §2.7.5.3.1: a chain longer than its table (the queue, or an indirect table) is a loop.
      if (++visited > budget) throw new QueueViolation('chain-too-long', `chain from head ${head} exceeds ${budget} descriptors`);
      if ((flags & DESC_F_INDIRECT) !== 0) {
        if (!this.indirect) throw new QueueViolation('indirect-not-negotiated', `descriptor ${index} is indirect without VIRTIO_F_INDIRECT_DESC`);
        // §2.7.5.3.1: no nested tables; INDIRECT and NEXT never together.
        if (inIndirect) throw new QueueViolation('nested-indirect', `indirect descriptor ${index} inside an indirect table`);
        if ((flags & DESC_F_NEXT) !== 0) throw new QueueViolation('indirect-with-next', `descriptor ${index} has both INDIRECT and NEXT`);
        if (len === 0 || len % DESC_SIZE !== 0 || len / DESC_SIZE > MAX_INDIRECT_ENTRIES) {
          throw new QueueViolation('indirect-table-size', `indirect table of ${len} bytes (at most ${MAX_INDIRECT_ENTRIES} entries)`);
        }
        if (addr === undefined || !memory.isValidRange(addr, len)) {
          throw new QueueViolation('buffer-out-of-memory', `indirect table at ${hex(addr)} + ${len} is not guest RAM`);
        }
        tableAddr = addr;
        tableSize = len / DESC_SIZE;
        index = 0;
        inIndirect = true;
        budget = tableSize;
        visited = 0;
        continue;
      }
      if (addr === undefined || !memory.isValidRange(addr, len)) {
        throw new QueueViolation('buffer-out-of-memory', `descriptor ${index}: ${hex(addr)} + ${len} is not guest RAM`);
      }
      total += len;
      if (total > MAX_CHAIN_BYTES) throw new QueueViolation('chain-too-large', `chain from head ${head} exceeds 4 GiB`);
      const n = chain.count;
      if ((flags & DESC_F_WRITE) !== 0) {
        chain.writableBytes += len;
      } else {
        // §2.7.4.2: device-readable descriptors all come before device-writable ones.
        if (n !== chain.writableStart) throw new QueueViolation('readable-after-writable', `descriptor ${index} is readable after a writable one`);
        chain.writableStart = n + 1;
        chain.readableBytes += len;
      }
      chain.push(addr, len);
      if ((flags & DESC_F_NEXT) === 0) return;
      if (next >= tableSize) throw new QueueViolation('descriptor-index', `next ${next} >= table size ${tableSize}`);
      index = next;
    }
  }

  /** Returns a chain to the driver with the number of bytes the device wrote into it (§2.7.8). */
  pushUsed(head: number, written: number): void {
    const slot = this.usedAddr + 4 + 8 * (this.usedIdx % this.size);
    this.memory.writeU32LE(slot, head);
    this.memory.writeU32LE(slot + 4, written >>> 0);
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    // The element must be visible before the index: x86 keeps stores in order.
    this.memory.writeU16LE(this.usedAddr + 2, this.usedIdx);
  }

  /**
   * Whether the driver wants an interrupt for the used entries added since the last call
   * (§2.7.7 with and without VIRTIO_F_EVENT_IDX). Call once after a batch of pushUsed.
   */
  needsNotification(): boolean {
    // The used idx store must be visible before used_event / flags are read.
    fullFence();
    if (!this.eventIdx) {
      return (this.memory.readU16LE(this.availAddr) & AVAIL_F_NO_INTERRUPT) === 0;
    }
    const newIdx = this.usedIdx;
    const oldIdx = this.signalledUsed;
    const valid = this.signalledValid;
    this.signalledUsed = newIdx;
    this.signalledValid = true;
    if (!valid) return true;
    const usedEvent = this.memory.readU16LE(this.availAddr + 4 + 2 * this.size);
    // vring_need_event: notify if used_event lies in (old, new].
    return ((newIdx - usedEvent - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
  }

  /**
   * Asks the driver to kick again for new buffers (after a drain), then reports whether
   * buffers arrived meanwhile: if so the caller must keep processing (§2.7.10).
   */
  enableNotifications(): boolean {
    if (this.eventIdx) {
      this.memory.writeU16LE(this.usedAddr + 4 + 8 * this.size, this.lastAvail);
    } else {
      this.memory.writeU16LE(this.usedAddr, this.memory.readU16LE(this.usedAddr) & ~USED_F_NO_NOTIFY);
    }
    fullFence();
    return this.pending() !== 0;
  }

  /** Tells the driver kicks are not needed while the device is already processing. */
  disableNotifications(): void {
    if (!this.eventIdx) this.memory.writeU16LE(this.usedAddr, this.memory.readU16LE(this.usedAddr) | USED_F_NO_NOTIFY);
    // With EVENT_IDX, leaving avail_event behind has the same effect.
  }
}
