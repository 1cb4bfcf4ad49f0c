// The device side of a packed virtqueue (virtio 1.2 §2.8). One ring of 16-byte descriptors
// {addr u64, len u32, id u16, flags u16}; a descriptor is available when its AVAIL flag equals
// the driver's wrap counter and its USED flag does not; the device returns a chain by writing
// {id, len, flags with AVAIL = USED = its own wrap counter} at its used position. Two 4-byte
// event suppression areas {off_wrap u16, flags u16} replace the split ring's flags and event
// indices. Same hostile-driver rules as the split queue.
//
// A chain's `head` here is a token: buffer id + 65536 * ring slots used, because returning a
// chain must advance the used position by the number of descriptors the chain took.
import type { GuestMemory } from '../../memory/guest-memory.js';
import type { DescriptorChain } from './descriptor-chain.js';
import { QueueViolation } from './errors.js';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, hasFeature } from './features.js';
import { fullFence } from './memory-fence.js';
import { checkArea, hex, readU64AsNumber } from './ring-memory.js';
import { MAX_INDIRECT_ENTRIES, MAX_QUEUE_SIZE, type QueueStart } from './split-queue.js';

const F_NEXT = 1;
const F_WRITE = 2;
const F_INDIRECT = 4;
const F_AVAIL = 1 << 7;
const F_USED = 1 << 15;
const EVENT_ENABLE = 0;
const EVENT_DISABLE = 1;
const EVENT_DESC = 2;
const DESC_SIZE = 16;
const MAX_CHAIN_BYTES = 0xffff_ffff;
/** Initial position: index 0 with the wrap counter set (§2.8.1). */
const INITIAL_POSITION = 0x8000;

export class PackedQueue {
  readonly size: number;
  private readonly descAddr: number;
  private readonly driverEvent: number;
  private readonly deviceEvent: number;
  private readonly eventIdx: boolean;
  private readonly indirect: boolean;
  private availIdx: number;
  private availWrap: boolean;
  private usedIdx: number;
  private usedWrap: boolean;
  /** Ring slots taken by the chains popped most recently (for undoPop). */
  private readonly popped: Int32Array;
  private poppedCount = 0;
  private signalledUsed = 0;
  private signalledValid = false;

  constructor(config: QueueStart, private readonly memory: GuestMemory, features: bigint) {
    const { size } = config;
    // §2.8: a packed queue's size need not be a power of 2.
    if (!Number.isInteger(size) || size < 1 || size > MAX_QUEUE_SIZE) {
      throw new QueueViolation('bad-queue-size', `packed queue size ${size} is not in [1, ${MAX_QUEUE_SIZE}]`);
    }
    this.size = size;
    this.eventIdx = hasFeature(features, VIRTIO_F_EVENT_IDX);
    this.indirect = hasFeature(features, VIRTIO_F_INDIRECT_DESC);
    this.descAddr = config.descAddr;
    this.driverEvent = config.driverAddr;
    this.deviceEvent = config.deviceAddr;
    checkArea(memory, 'descriptor ring', this.descAddr, DESC_SIZE * size, 16);
    checkArea(memory, 'driver event area', this.driverEvent, 4, 4);
    checkArea(memory, 'device event area', this.deviceEvent, 4, 4);
    const avail = config.nextAvail ?? INITIAL_POSITION;
    const used = config.nextUsed ?? INITIAL_POSITION;
    this.availIdx = avail & 0x7fff;
    this.availWrap = (avail & 0x8000) !== 0;
    this.usedIdx = used & 0x7fff;
    this.usedWrap = (used & 0x8000) !== 0;
    if (this.availIdx >= size || this.usedIdx >= size) throw new QueueViolation('descriptor-index', `ring position beyond queue size ${size}`);
    this.popped = new Int32Array(size);
    this.signalledUsed = this.usedIdx;
  }

  get nextAvail(): number {
    return this.availIdx | (this.availWrap ? 0x8000 : 0);
  }

  get nextUsed(): number {
    return this.usedIdx | (this.usedWrap ? 0x8000 : 0);
  }

  private available(flags: number, wrap: boolean): boolean {
    return ((flags & F_AVAIL) !== 0) === wrap && ((flags & F_USED) !== 0) !== wrap;
  }

  pending(): number {
    return this.available(this.memory.readU16LE(this.descAddr + DESC_SIZE * this.availIdx + 14), this.availWrap) ? 1 : 0;
  }

  pop(chain: DescriptorChain): boolean {
    const memory = this.memory;
    const size = this.size;
    let idx = this.availIdx;
    let wrap = this.availWrap;
    // Flags first; the rest of the descriptor only after (x86 keeps loads in order).
    let flags = memory.readU16LE(this.descAddr + DESC_SIZE * idx + 14);
    if (!this.available(flags, wrap)) return false;
    chain.clear(0);
    let slots = 0;
    let total = 0;
    let bufferId = 0;
    for (;;) {
      const d = this.descAddr + DESC_SIZE * idx;
      if (slots > 0) {
        flags = memory.readU16LE(d + 14);
        // §2.8.6: every descriptor of a chain is made available with the same wrap counter.
        if (!this.available(flags, wrap)) throw new QueueViolation('descriptor-index', `descriptor ${idx} in a chain is not available`);
      }
      // §2.8.7: a chain never has more descriptors than the ring.
      if (++slots > size) throw new QueueViolation('chain-too-long', `packed chain exceeds ${size} descriptors`);
      const addr = readU64AsNumber(memory, d);
      const len = memory.readU32LE(d + 8);
      bufferId = memory.readU16LE(d + 12);
      if ((flags & F_INDIRECT) !== 0) {
        if (!this.indirect) throw new QueueViolation('indirect-not-negotiated', `descriptor ${idx} is indirect without VIRTIO_F_INDIRECT_DESC`);
        // §2.8.9: an indirect descriptor is alone in its chain (never with NEXT).
        if ((flags & F_NEXT) !== 0 || chain.count > 0) throw new QueueViolation('indirect-with-next', `indirect descriptor ${idx} is part of a longer chain`);
        if (len === 0 || len % DESC_SIZE !== 0 || len / DESC_SIZE > MAX_INDIRECT_ENTRIES) {
          throw new QueueViolation('indirect-table-size', `indirect table of ${len} bytes (at most ${MAX_INDIRECT_ENTRIES} entries)`);
        }
        if (addr === undefined || !memory.isValidRange(addr, len)) throw new QueueViolation('buffer-out-of-memory', `indirect table at ${hex(addr)} + ${len} is not guest RAM`);
        for (let i = 0; i < len / DESC_SIZE; i++) {
          const e = addr + DESC_SIZE * i;
          const entryFlags = memory.readU16LE(e + 14);
          if ((entryFlags & F_INDIRECT) !== 0) throw new QueueViolation('nested-indirect', `indirect table entry ${i} is indirect`);
          total = this.addSegment(chain, readU64AsNumber(memory, e), memory.readU32LE(e + 8), (entryFlags & F_WRITE) !== 0, total);
        }
      } else {
        total = this.addSegment(chain, addr, len, (flags & F_WRITE) !== 0, total);
      }
      if (++idx === size) {
        idx = 0;
        wrap = !wrap;
      }
      if ((flags & F_NEXT) === 0) break;
    }
    this.availIdx = idx;
    this.availWrap = wrap;
    this.popped[this.poppedCount % size] = slots;
    this.poppedCount++;
    chain.head = bufferId + 65536 * slots;
    return true;
  }

  private addSegment(chain: DescriptorChain, addr: number | undefined, len: number, writable: boolean, total: number): number {
    if (addr === undefined || !this.memory.isValidRange(addr, len)) throw new QueueViolation('buffer-out-of-memory', `buffer ${hex(addr)} + ${len} is not guest RAM`);
    const sum = total + len;
    if (sum > MAX_CHAIN_BYTES) throw new QueueViolation('chain-too-large', 'chain exceeds 4 GiB');
    if (writable) {
      chain.writableBytes += len;
    } else {
      // §2.8.4 (as §2.7.4.2): device-readable buffers come before device-writable ones.
      if (chain.count !== chain.writableStart) throw new QueueViolation('readable-after-writable', 'readable buffer after a writable one');
      chain.writableStart = chain.count + 1;
      chain.readableBytes += len;
    }
    chain.push(addr, len);
    return sum;
  }

  undoPop(): void {
    if (this.poppedCount === 0) return;
    this.poppedCount--;
    const slots = this.popped[this.poppedCount % this.size]!;
    this.availIdx -= slots;
    if (this.availIdx < 0) {
      this.availIdx += this.size;
      this.availWrap = !this.availWrap;
    }
  }

  pushUsed(head: number, written: number): void {
    const id = head & 0xffff;
    const slots = Math.max(1, Math.floor(head / 65536));
    const d = this.descAddr + DESC_SIZE * this.usedIdx;
    this.memory.writeU32LE(d + 8, written >>> 0);
    this.memory.writeU16LE(d + 12, id);
    // The flags publish the element: written last (x86 keeps stores in order).
    this.memory.writeU16LE(d + 14, (this.usedWrap ? F_AVAIL | F_USED : 0) | (written > 0 ? F_WRITE : 0));
    this.usedIdx += slots;
    if (this.usedIdx >= this.size) {
      this.usedIdx -= this.size;
      this.usedWrap = !this.usedWrap;
    }
    // Popped chains are returned in any order; the history only serves undoPop right after pop.
    this.poppedCount = 0;
  }

  /** §2.8.10: the driver's event suppression decides. */
  needsNotification(): boolean {
    fullFence();
    const offWrap = this.memory.readU16LE(this.driverEvent);
    const flags = this.memory.readU16LE(this.driverEvent + 2) & 3;
    const oldIdx = this.signalledUsed;
    const newIdx = this.usedIdx;
    const valid = this.signalledValid;
    this.signalledUsed = newIdx;
    this.signalledValid = true;
    if (flags === EVENT_DISABLE) return false;
    if (flags !== EVENT_DESC || !this.eventIdx) return true;
    if (!valid) return true;
    let event = offWrap & 0x7fff;
    if ((offWrap >> 15 !== 0) !== this.usedWrap) event -= this.size;
    return ((newIdx - event - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
  }

  enableNotifications(): boolean {
    if (this.eventIdx) {
      this.memory.writeU16LE(this.deviceEvent, this.nextAvail);
      this.memory.writeU16LE(this.deviceEvent + 2, EVENT_DESC);
    } else {
      this.memory.writeU16LE(this.deviceEvent + 2, EVENT_ENABLE);
    }
    fullFence();
    return this.pending() !== 0;
  }

  disableNotifications(): void {
    this.memory.writeU16LE(this.deviceEvent + 2, EVENT_DISABLE);
  }
}
