// virtio-fs (virtio 1.2 §5.11): FUSE over virtqueues. Queue 0 is hiprio (FORGET and
// BATCH_FORGET, no reply); queues 1..N carry requests: the chain's device-readable part is a
// FUSE request, its device-writable part receives the reply. The FUSE protocol itself is the
// file-system engine's (src/fs FuseHandler); this class only does the framing.
//
// Replies can come later than the kick (data I/O runs in the libuv pool), so every request in
// flight owns a slot: its own DescriptorChain and a copy of the request bytes. A reset bumps
// the epoch, and late completions from an earlier epoch are dropped without touching memory.
//
// Zero copy: where guest RAM is mapped in this process (vhost-user regions, memfd RAM), a WRITE's
// data and a READ's reply data are not copied: the handler gets only the headers plus a
// ChainPayload (host iovecs of the data part) and moves the data with pwritev/preadv in place, as
// virtiofsd does. Anything else (anonymous memory, a range crossing a region end, more than
// IOV_MAX pieces, other opcodes) is copied as before.
import type { GuestMemory } from '../../../memory/guest-memory.js';
import type { DescriptorChain } from '../../queue/descriptor-chain.js';
import { DescriptorChain as Chain } from '../../queue/descriptor-chain.js';
import { QueueDevice, queueFeatures, type DeviceOptions } from '../queue-device.js';
import { ChainPayload } from './chain-payload.js';

export const VIRTIO_ID_FS = 26;
const TAG_BYTES = 36;
const CONFIG_SIZE = 40;
/** The largest FORGET batch read from the hiprio queue (BATCH_FORGET: 16 bytes per entry). */
const MAX_HIPRIO_REQUEST = 64 * 1024;
/** Linux errno for a request larger than the engine accepts. */
const E2BIG = 7;
/** <linux/fuse.h>: opcodes whose data can move without a copy, and header sizes. */
const FUSE_READ = 15;
const FUSE_WRITE = 16;
const IN_HEADER_BYTES = 40;
const OUT_HEADER_BYTES = 16;
/** fuse_in_header + fuse_read_in / fuse_write_in (40 bytes each since protocol 7.9). */
const DATA_HEADERS_BYTES = IN_HEADER_BYTES + 40;

/** What the device needs of a FUSE server: src/fs FuseHandler fits. */
export interface FuseRequestHandler {
  /**
   * Calls done exactly once (synchronously or later) with the reply, or null for none. With a
   * payload (READ and WRITE on host-mapped memory, see src/fs/data-payload.ts), a WRITE's request
   * holds only its headers and the data is the payload's; a READ may place its data through the
   * payload and reply with the out header alone, whose len counts the placed bytes.
   */
  handle(request: Uint8Array, done: (reply: Uint8Array | null) => void, payload?: ChainPayload): void;
  /** FORGET / BATCH_FORGET fast path. */
  forget(request: Uint8Array): void;
}

export interface FsDeviceOptions extends DeviceOptions {
  /** Mount tag the guest uses (`mount -t virtiofs TAG /mnt`), at most 36 bytes of UTF-8. */
  readonly tag: string;
  readonly requestQueues?: number;
  readonly queueSize?: number;
  /** Requests served concurrently; more wait in the available ring. */
  readonly maxInFlight?: number;
  /** Largest FUSE request accepted (the engine's buffer size: max_write plus headers). */
  readonly maxRequestBytes?: number;
  /** Requests taken from one queue per run before it yields (default: until the ring is empty).
   *  A device on a thread of its own yields so that commands between runs wait a bounded time;
   *  the rest stays in the ring (notifications off) until resumeQueues(). */
  readonly requestsPerRun?: number;
  /** Hand READ/WRITE data to the handler as iovecs into guest RAM where it is mapped in this
   *  process (default: on, unless NOVM_FS_ZERO_COPY=0 in the environment, for A/B runs). */
  readonly zeroCopy?: boolean;
  /**
   * Serve FORGETs without the driver's kicks while the device is busy anyway (a device on a
   * thread of its own). The driver never waits for a FORGET, so the hiprio ring is left with
   * notifications off after a kick, read again at each wake-up (pollForgets), signalled once per
   * FORGET_SIGNAL_BATCH entries, and given back its kicks when the thread has been idle
   * (settleForgets). Saves a kick, a wake-up and an interrupt per evicted inode.
   */
  readonly lazyForgets?: boolean;
}

/** Used FORGET chains between two interrupts on the hiprio queue in lazy mode. */
const FORGET_SIGNAL_BATCH = 32;

interface Slot {
  chain: DescriptorChain;
  request: Uint8Array;
  /** fuse_in_header + fuse_read_in/fuse_write_in of a request served with a payload. */
  readonly headers: Uint8Array;
  readonly payload: ChainPayload;
  /** The request is a READ whose reply data may have been placed through the payload. */
  readPayload: boolean;
  queue: number;
  epoch: number;
  /** performance.now() when the request was popped (service-time metric). */
  started: number;
  readonly done: (reply: Uint8Array | null) => void;
}

export class FsDevice extends QueueDevice {
  readonly deviceType = VIRTIO_ID_FS;
  readonly queueMaxSizes: readonly number[];
  readonly deviceFeatures: bigint;
  readonly configSize = CONFIG_SIZE;
  private readonly config = new Uint8Array(CONFIG_SIZE);
  private readonly free: Slot[] = [];
  private slotCount = 0;
  private readonly maxInFlight: number;
  private readonly maxRequestBytes: number;
  private readonly requestsPerRun: number;
  private readonly lazyForgets: boolean;
  /** Lazy mode: the hiprio ring is being polled (its notifications are off). */
  private forgetsQuiet = false;
  private forgetsUnsignalled = 0;
  private readonly hiprio = new Uint8Array(MAX_HIPRIO_REQUEST);
  private readonly requestHeader = new Uint8Array(16);
  private readonly errorOut = new Uint8Array(16);
  private epoch = 0;
  private processing = false;
  private readonly pendingSignal: boolean[];
  private readonly throttled: boolean[];
  private signalScheduled = false;
  /** Requests in flight per queue, and who waits for a queue to drain (quiesce). */
  private readonly inFlight: number[];
  private readonly drained = new Map<number, Array<() => void>>();
  /** serviceMs: summed time from pop to reply (engine plus framing), for --stats. */
  /** zeroCopyReads/zeroCopyWrites: data moved through a payload; gathered: payload requests the
   *  handler still wanted copied (an asynchronous DataIo, a WRITE waiting for a copy-up). */
  readonly stats = { requests: 0, forgets: 0, oversized: 0, late: 0, serviceMs: 0, zeroCopyReads: 0, zeroCopyWrites: 0, gathered: 0 };
  private readonly zeroCopy: boolean;

  constructor(private readonly handler: FuseRequestHandler, options: FsDeviceOptions) {
    super(options);
    this.deviceFeatures = queueFeatures(options);
    const requestQueues = options.requestQueues ?? 1;
    const queueSize = options.queueSize ?? 1024;
    if (!Number.isInteger(requestQueues) || requestQueues < 1 || requestQueues > 256) throw new RangeError(`bad request queue count ${requestQueues}`);
    this.queueMaxSizes = new Array<number>(1 + requestQueues).fill(queueSize);
    this.maxInFlight = options.maxInFlight ?? 32;
    this.maxRequestBytes = options.maxRequestBytes ?? (1 << 20) + 4096;
    this.requestsPerRun = options.requestsPerRun ?? Infinity;
    this.lazyForgets = options.lazyForgets ?? false;
    this.zeroCopy = options.zeroCopy ?? process.env['NOVM_FS_ZERO_COPY'] !== '0';
    const tag = new TextEncoder().encode(options.tag);
    if (tag.length === 0 || tag.length > TAG_BYTES) throw new RangeError(`virtio-fs tag must be 1 to ${TAG_BYTES} bytes`);
    this.config.set(tag);
    new DataView(this.config.buffer).setUint32(TAG_BYTES, requestQueues, true);
    this.pendingSignal = new Array<boolean>(1 + requestQueues).fill(false);
    this.throttled = new Array<boolean>(1 + requestQueues).fill(false);
    this.inFlight = new Array<number>(1 + requestQueues).fill(0);
  }

  override quiesce(index: number): Promise<void> | undefined {
    super.quiesce(index);
    if ((this.inFlight[index] ?? 0) === 0) return undefined;
    return new Promise((resolve) => {
      const waiting = this.drained.get(index) ?? [];
      waiting.push(resolve);
      this.drained.set(index, waiting);
    });
  }

  private settle(index: number): void {
    if ((this.inFlight[index] ?? 0) > 0) return;
    const waiting = this.drained.get(index);
    if (waiting === undefined) return;
    this.drained.delete(index);
    for (const resolve of waiting) resolve();
  }

  protected get name(): string {
    return 'virtio-fs';
  }

  /** True while a queue was left with requests in its ring (run budget or out of slots). */
  get hasDeferredWork(): boolean {
    // A queue being stopped (quiesce) is not resumed: its requests wait for the next activation.
    return this.isActive && this.throttled.some((t, i) => t && !this.paused.has(i));
  }

  /** Serves the queues that were left with requests in their ring. */
  resumeQueues(): void {
    for (let i = 1; i < this.throttled.length; i++) if (this.throttled[i] && this.isActive) this.notify(i);
  }

  readConfig(offset: number, data: Uint8Array): void {
    data.fill(0);
    if (offset < 0 || offset >= CONFIG_SIZE) return;
    data.set(this.config.subarray(offset, Math.min(CONFIG_SIZE, offset + data.length)));
  }

  writeConfig(): void {}

  protected override onReset(): void {
    // Requests still in flight finish in the engine; their replies are dropped (§2.1.2: after
    // reset the device must not touch the rings).
    this.epoch++;
    this.forgetsQuiet = false;
    this.forgetsUnsignalled = 0;
    this.pendingSignal.fill(false);
    this.throttled.fill(false);
    this.inFlight.fill(0);
    // Nothing in flight counts any more: whoever waits for a drain can go on.
    for (const index of [...this.drained.keys()]) this.settle(index);
  }

  protected processQueue(index: number): void {
    if (index === 0) {
      if (this.lazyForgets) this.serveForgetsQuietly();
      else this.drain(0, this.takeForget);
      return;
    }
    this.serveRequests(index);
  }

  private readonly takeForget = (chain: DescriptorChain, memory: GuestMemory): number => {
    const n = Math.min(chain.readableBytes, MAX_HIPRIO_REQUEST);
    chain.readFrom(memory, 0, this.hiprio.subarray(0, n));
    this.stats.forgets++;
    this.handler.forget(this.hiprio.subarray(0, n));
    return 0;
  };

  private serveForgetsQuietly(): void {
    this.forgetsQuiet = true;
    this.forgetsUnsignalled += this.drain(0, this.takeForget, true);
    if (this.forgetsUnsignalled >= FORGET_SIGNAL_BATCH) {
      this.forgetsUnsignalled = 0;
      this.signal(0);
    }
  }

  protected override keepsNotificationsOff(index: number): boolean {
    // Lazy FORGETs: settleForgets gives the hiprio ring its kicks back.
    return index === 0 && this.forgetsQuiet;
  }

  /** Lazy FORGETs: the hiprio ring is being polled, so the thread should not sleep for good. */
  get forgetsPending(): boolean {
    return this.forgetsQuiet && this.isActive;
  }

  /** Lazy FORGETs: serves those that arrived without a kick (call after every wake-up). */
  pollForgets(): void {
    // As a kick would (notify checks the device and the ring, and turns errors into NEEDS_RESET).
    if (this.forgetsQuiet) this.notify(0);
  }

  /** Lazy FORGETs, the thread is idle: serve the rest, signal it, and let the driver kick again. */
  settleForgets(): void {
    if (!this.forgetsQuiet) return;
    this.forgetsQuiet = false;
    if (!this.isActive || this.paused.has(0)) return;
    try {
      // drain re-enables notifications and signals what it used; signal the earlier ones too.
      if (this.drain(0, this.takeForget) === 0 && this.forgetsUnsignalled > 0) this.signal(0);
      this.forgetsUnsignalled = 0;
    } catch (error) {
      this.handleError(error);
    }
  }

  private serveRequests(index: number): void {
    const queue = this.queues[index];
    const memory = this.memory;
    if (queue === undefined || memory === undefined) return;
    this.processing = true;
    this.throttled[index] = false;
    let taken = 0;
    try {
      for (;;) {
        queue.disableNotifications();
        for (;;) {
          if (taken >= this.requestsPerRun) {
            // Yield with notifications still off: resumeQueues() picks the rest up.
            this.throttled[index] = true;
            return;
          }
          const slot = this.takeSlot(queue.size);
          if (slot === undefined) {
            // Out of slots: leave the rest in the ring; a completion resumes this queue.
            this.throttled[index] = true;
            return;
          }
          let popped = false;
          try {
            popped = queue.pop(slot.chain);
          } finally {
            // A chain that breaks the rules throws (the queue then needs a reset): the slot it
            // was to use stays free, or 32 such chains would leave none for after the reset.
            if (!popped) this.free.push(slot);
          }
          if (!popped) break;
          this.stats.requests++;
          taken++;
          slot.queue = index;
          slot.epoch = this.epoch;
          slot.started = performance.now();
          this.inFlight[index] = (this.inFlight[index] ?? 0) + 1;
          const length = slot.chain.readableBytes;
          if (length > this.maxRequestBytes) {
            this.stats.oversized++;
            this.finish(slot, this.errorReply(slot.chain, memory, E2BIG));
            continue;
          }
          slot.readPayload = false;
          if (this.zeroCopy && memory.hasHostMapping && this.serveWithPayload(slot, memory, length)) continue;
          this.handler.handle(this.copyRequest(slot, memory), slot.done);
        }
        if (this.polling || !queue.enableNotifications()) break;
      }
    } finally {
      this.processing = false;
      this.flushSignals();
    }
  }

  /** The whole device-readable part copied into the slot's request buffer (grown if needed). */
  private copyRequest(slot: Slot, memory: GuestMemory): Uint8Array {
    const length = slot.chain.readableBytes;
    if (slot.request.length < length) slot.request = new Uint8Array(Math.max(length, 2 * slot.request.length));
    const request = slot.request.subarray(0, length);
    slot.chain.readFrom(memory, 0, request);
    return request;
  }

  /**
   * READ and WRITE without a copy of their data: the opcode is peeked in guest memory, the
   * headers are copied, and the data part is described as host iovecs (ChainPayload). False when
   * the request is anything else or its data cannot be described that way (then it is copied).
   */
  private serveWithPayload(slot: Slot, memory: GuestMemory, length: number): boolean {
    const chain = slot.chain;
    // The opcode is the in_header's second u32; a first segment shorter than that is copied.
    if (length < DATA_HEADERS_BYTES || chain.count === 0 || chain.writableStart === 0 || chain.lengths[0]! < 8) return false;
    const op = memory.readU32LE(chain.addresses[0]! + 4);
    if (op === FUSE_WRITE) {
      // The data is whatever follows the headers; the handler checks in_header.len against it.
      if (length === DATA_HEADERS_BYTES || !slot.payload.describe(chain, memory, false, DATA_HEADERS_BYTES, length - DATA_HEADERS_BYTES)) return false;
    } else if (op === FUSE_READ) {
      // The reply's data area: the writable side after the out header (a shorter buffer than the
      // READ asks for is the handler's to notice, through limit()).
      if (length !== DATA_HEADERS_BYTES || chain.writableBytes <= OUT_HEADER_BYTES || !slot.payload.describe(chain, memory, true, OUT_HEADER_BYTES, chain.writableBytes - OUT_HEADER_BYTES)) return false;
      slot.readPayload = true;
    } else {
      return false;
    }
    chain.readFrom(memory, 0, slot.headers);
    const headers = slot.headers;
    if ((headers[4]! | (headers[5]! << 8) | (headers[6]! << 16) | (headers[7]! << 24)) !== op) {
      // The guest changed the opcode under us: serve what the copy says, copied.
      slot.readPayload = false;
      this.handler.handle(this.copyRequest(slot, memory), slot.done);
      return true;
    }
    if (op === FUSE_WRITE) this.stats.zeroCopyWrites++;
    this.handler.handle(headers, slot.done, slot.payload);
    return true;
  }

  /**
   * A FUSE error reply {len 16, error -errno, unique} for a request the engine never sees:
   * the driver gets a clean error instead of a short reply.
   */
  private errorReply(chain: DescriptorChain, memory: GuestMemory, errno: number): Uint8Array | null {
    if (chain.readFrom(memory, 0, this.requestHeader) < 16) return null;
    const out = new DataView(this.errorOut.buffer);
    out.setUint32(0, 16, true);
    out.setInt32(4, -errno, true);
    out.setBigUint64(8, new DataView(this.requestHeader.buffer).getBigUint64(8, true), true);
    return this.errorOut;
  }

  private takeSlot(queueSize: number): Slot | undefined {
    let slot = this.free.pop();
    if (slot !== undefined && slot.chain.capacity < queueSize) slot.chain = new Chain(queueSize);
    if (slot === undefined && this.slotCount < this.maxInFlight) {
      this.slotCount++;
      const created: Slot = {
        chain: new Chain(queueSize), request: new Uint8Array(4096), headers: new Uint8Array(DATA_HEADERS_BYTES),
        payload: new ChainPayload(() => this.gather(created)), readPayload: false, queue: 0, epoch: -1, started: 0,
        done: (reply) => this.finish(created, reply),
      };
      slot = created;
    }
    return slot;
  }

  /** ChainPayload.gather(): the request copied as without a payload (only while it is handled). */
  private gather(slot: Slot): Uint8Array {
    const memory = this.memory;
    // Only called while the request is handled synchronously, so the memory it came from is here.
    if (memory === undefined || slot.epoch !== this.epoch) throw new Error('virtio-fs: a payload was gathered after its request was handed back');
    this.stats.gathered++;
    return this.copyRequest(slot, memory);
  }

  /** A reply from the engine (or none): write it, return the chain, maybe notify. */
  private finish(slot: Slot, reply: Uint8Array | null): void {
    const current = slot.epoch === this.epoch;
    try {
      if (!current) {
        this.stats.late++;
        return;
      }
      const queue = this.queues[slot.queue];
      const memory = this.memory;
      if (queue === undefined || memory === undefined || !this.isActive) return;
      let written = reply === null ? 0 : slot.chain.writeTo(memory, 0, reply);
      if (slot.readPayload && reply !== null && reply.length === OUT_HEADER_BYTES && written === OUT_HEADER_BYTES) {
        // A READ whose data went straight into the chain: the header's len counts it (bounded by
        // what the payload described, so a wrong len cannot claim bytes never written).
        const len = (reply[0]! | (reply[1]! << 8) | (reply[2]! << 16) | (reply[3]! << 24)) >>> 0;
        const error = reply[4]! | reply[5]! | reply[6]! | reply[7]!;
        if (error === 0 && len > OUT_HEADER_BYTES) {
          written += Math.min(len - OUT_HEADER_BYTES, slot.payload.bytes);
          this.stats.zeroCopyReads++;
        }
      }
      queue.pushUsed(slot.chain.head, written);
      this.stats.serviceMs += performance.now() - slot.started;
      this.pendingSignal[slot.queue] = true;
    } catch (error) {
      this.handleError(error);
    } finally {
      slot.epoch = -1;
      this.free.push(slot);
    }
    if (current) {
      this.inFlight[slot.queue] = Math.max(0, (this.inFlight[slot.queue] ?? 1) - 1);
      if (this.inFlight[slot.queue] === 0) {
        // A stopping queue's last reply must reach the driver before its position is reported.
        if (this.drained.has(slot.queue)) this.flushSignals();
        this.settle(slot.queue);
      }
    }
    if (!this.processing) this.scheduleSignals();
  }

  /** Completions from the thread pool arrive one by one: notify once per turn of the loop. */
  private scheduleSignals(): void {
    if (this.signalScheduled) return;
    this.signalScheduled = true;
    setImmediate(() => this.flushCompletions());
  }

  /**
   * Signals the requests completed outside a queue run and resumes queues that ran out of slots.
   * Runs on the next turn of the event loop; a thread that never returns to its loop (the
   * vhost-user queue thread) calls it after finishing such requests.
   */
  flushCompletions(): void {
    this.signalScheduled = false;
    this.flushSignals();
    // Slots came back: resume queues that ran out of them.
    for (let i = 1; i < this.throttled.length; i++) if (this.throttled[i] && this.isActive) this.notify(i);
  }

  private flushSignals(): void {
    for (let i = 0; i < this.pendingSignal.length; i++) {
      if (!this.pendingSignal[i]) continue;
      this.pendingSignal[i] = false;
      if (this.isActive) {
        try {
          this.signal(i);
        } catch (error) {
          this.handleError(error);
        }
      }
    }
  }
}
