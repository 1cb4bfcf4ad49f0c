// virtio-net (virtio 1.2 section 5.1) over a host tap: queue 0 receives (tap -> guest), queue 1
// transmits (guest -> tap). Frames keep their 12-byte virtio_net_hdr_v1 end to end: the tap is
// opened with IFF_VNET_HDR and a header size of 12, so checksum and segmentation offload
// metadata pass through untouched and the kernel (not novm) validates the guest's header.
// The device does no I/O of its own: the tap comes in as a TapPort.
import { randomBytes } from 'node:crypto';
import { InputError } from '../../../common/errors.js';
import type { GuestMemory } from '../../../memory/guest-memory.js';
import { DescriptorChain } from '../../queue/descriptor-chain.js';
import { QUEUE_FEATURES } from '../../queue/features.js';
import { QueueDevice, type DeviceOptions } from '../queue-device.js';
import { TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN, type TapPort } from './tap-port.js';

export const VIRTIO_ID_NET = 1;
export const VIRTIO_NET_F_CSUM = 1n << 0n;
export const VIRTIO_NET_F_GUEST_CSUM = 1n << 1n;
export const VIRTIO_NET_F_MAC = 1n << 5n;
export const VIRTIO_NET_F_GUEST_TSO4 = 1n << 7n;
export const VIRTIO_NET_F_GUEST_TSO6 = 1n << 8n;
export const VIRTIO_NET_F_GUEST_ECN = 1n << 9n;
export const VIRTIO_NET_F_HOST_TSO4 = 1n << 11n;
export const VIRTIO_NET_F_HOST_TSO6 = 1n << 12n;
export const VIRTIO_NET_F_HOST_ECN = 1n << 13n;
export const VIRTIO_NET_F_MRG_RXBUF = 1n << 15n;
export const VIRTIO_NET_F_STATUS = 1n << 16n;
export const VIRTIO_NET_S_LINK_UP = 1;

/** sizeof(struct virtio_net_hdr_v1): always 12 bytes with VERSION_1 (5.1.6.1). */
export const NET_HEADER_SIZE = 12;
const NUM_BUFFERS_OFFSET = 10;
/** 5.1.6.3.1: the largest packet with GUEST_TSO4/6 is 65550 bytes of frame plus the header. */
export const MAX_FRAME_BYTES = NET_HEADER_SIZE + 65550;
const RX_QUEUE = 0;
const TX_QUEUE = 1;
const QUEUE_SIZE = 256;
/** Frames moved per readable event before yielding to the event loop (bounds host latency). */
const RX_BUDGET = 256;
/** Config space: mac[6], status u16, max_virtqueue_pairs u16, mtu u16 (5.1.4). */
const CONFIG_SIZE = 12;

export interface NetDeviceOptions extends DeviceOptions {
  /** "52:54:00:12:34:56" or 6 bytes; a random locally administered address by default. */
  readonly mac?: string | Uint8Array;
}

export interface NetMetrics {
  rxFrames: number;
  txFrames: number;
  rxDropped: number;
  txDropped: number;
}

export class NetDevice extends QueueDevice {
  readonly deviceType = VIRTIO_ID_NET;
  readonly queueMaxSizes = [QUEUE_SIZE, QUEUE_SIZE];
  readonly deviceFeatures: bigint;
  readonly configSize = CONFIG_SIZE;
  readonly mac: Uint8Array;
  readonly metrics: NetMetrics = { rxFrames: 0, txFrames: 0, rxDropped: 0, txDropped: 0 };
  private readonly config = new Uint8Array(CONFIG_SIZE);
  private readonly rxBuffer = new Uint8Array(MAX_FRAME_BYTES);
  private readonly txBuffer = new Uint8Array(MAX_FRAME_BYTES);
  private readonly numBuffers = new Uint8Array(2);
  /** Length of a frame read from the tap that is waiting for guest buffers (0: none). */
  private rxPending = 0;
  private firstRxChain: DescriptorChain | undefined;
  private usedHeads = new Uint32Array(0);
  private usedLengths = new Uint32Array(0);
  private readonly onReadable = (): void => this.tapReadable();
  private readonly txHandler = (chain: DescriptorChain, memory: GuestMemory): number => this.transmit(chain, memory);

  constructor(private readonly tap: TapPort, options: NetDeviceOptions = {}) {
    super(options);
    this.mac = parseMac(options.mac);
    this.config.set(this.mac, 0);
    this.config[6] = VIRTIO_NET_S_LINK_UP;
    this.config[8] = 1; // max_virtqueue_pairs (only read with VIRTIO_NET_F_MQ)
    new DataView(this.config.buffer).setUint16(10, 1500, true);
    const offloads = tap.supportedOffloads;
    let features = QUEUE_FEATURES | VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS | VIRTIO_NET_F_MRG_RXBUF |
      VIRTIO_NET_F_CSUM | VIRTIO_NET_F_HOST_TSO4 | VIRTIO_NET_F_HOST_TSO6 | VIRTIO_NET_F_HOST_ECN;
    // Guest-side offloads only if the kernel may hand the tap such packets (TUNSETOFFLOAD).
    if ((offloads & TUN_F_CSUM) !== 0) {
      features |= VIRTIO_NET_F_GUEST_CSUM;
      if ((offloads & TUN_F_TSO4) !== 0) features |= VIRTIO_NET_F_GUEST_TSO4;
      if ((offloads & TUN_F_TSO6) !== 0) features |= VIRTIO_NET_F_GUEST_TSO6;
      if ((offloads & TUN_F_TSO_ECN) !== 0 && (offloads & (TUN_F_TSO4 | TUN_F_TSO6)) !== 0) features |= VIRTIO_NET_F_GUEST_ECN;
    }
    this.deviceFeatures = features;
  }

  protected get name(): string {
    return 'virtio-net';
  }

  readConfig(offset: number, data: Uint8Array): void {
    data.fill(0);
    if (offset < 0 || offset >= CONFIG_SIZE) return;
    data.set(this.config.subarray(offset, Math.min(CONFIG_SIZE, offset + data.length)));
  }

  /** 5.1.4.2: the driver must not write the config space (mac is writable only on legacy). */
  writeConfig(): void {}

  /** The TUNSETOFFLOAD bits that the negotiated features allow. */
  static offloadsFor(features: bigint): number {
    let flags = 0;
    if ((features & VIRTIO_NET_F_GUEST_CSUM) !== 0n) flags |= TUN_F_CSUM;
    if ((features & VIRTIO_NET_F_GUEST_TSO4) !== 0n) flags |= TUN_F_TSO4;
    if ((features & VIRTIO_NET_F_GUEST_TSO6) !== 0n) flags |= TUN_F_TSO6;
    if ((features & VIRTIO_NET_F_GUEST_ECN) !== 0n) flags |= TUN_F_TSO_ECN;
    return flags;
  }

  protected override onActivate(): void {
    try {
      this.tap.setOffloads(NetDevice.offloadsFor(this.features) & this.tap.supportedOffloads);
    } catch (error: unknown) {
      this.log(`virtio-net: TUNSETOFFLOAD failed: ${error instanceof Error ? error.message : String(error)}`);
    }
    const rx = this.queues[RX_QUEUE];
    if (rx !== undefined) {
      this.firstRxChain = new DescriptorChain(rx.size);
      this.usedHeads = new Uint32Array(rx.size);
      this.usedLengths = new Uint32Array(rx.size);
    }
    this.rxPending = 0;
    this.tap.armReadable(this.onReadable);
  }

  protected override onReset(): void {
    this.rxPending = 0;
    this.firstRxChain = undefined;
    // Offloads back to none: nothing may reach a guest that has not negotiated them.
    try {
      this.tap.setOffloads(0);
    } catch {
      // The tap may be gone already; nothing to undo then.
    }
  }

  protected processQueue(index: number): void {
    if (index === TX_QUEUE) this.drain(TX_QUEUE, this.txHandler);
    else if (index === RX_QUEUE) this.receive();
  }

  private tapReadable(): void {
    if (!this.isActive) return;
    try {
      this.receive();
    } catch (error: unknown) {
      this.handleError(error);
    }
  }

  /** Moves frames from the tap into the guest until the tap is empty or the guest has no room. */
  private receive(): void {
    const queue = this.queues[RX_QUEUE];
    const memory = this.memory;
    if (queue === undefined || memory === undefined) return;
    let placed = 0;
    try {
      for (let budget = RX_BUDGET; budget > 0; budget--) {
        if (this.rxPending === 0) {
          const n = this.tap.read(this.rxBuffer);
          if (n === 0) {
            this.tap.armReadable(this.onReadable);
            return;
          }
          if (n < NET_HEADER_SIZE) {
            this.metrics.rxDropped++;
            continue;
          }
          this.rxPending = n;
        }
        if (!this.placeFrame(memory)) {
          // No guest buffers: ask for a kick (2.7.10) and stop reading; the kernel queues
          // or drops meanwhile. A kick on the rx queue resumes here.
          // Retry only if buffers arrived meanwhile, not for the ones that were too few.
          const had = queue.pending();
          queue.enableNotifications();
          if (queue.pending() > had) continue;
          return;
        }
        placed++;
      }
      // Budget spent with frames still waiting: come back through the event loop.
      this.tap.armReadable(this.onReadable);
    } finally {
      if (placed > 0 && this.isActive) this.signal(RX_QUEUE);
    }
  }

  /** Writes the pending frame into one or more rx chains. False if there are not enough. */
  private placeFrame(memory: GuestMemory): boolean {
    const queue = this.queues[RX_QUEUE]!;
    const first = this.firstRxChain!;
    const frame = this.rxBuffer.subarray(0, this.rxPending);
    const mergeable = (this.features & VIRTIO_NET_F_MRG_RXBUF) !== 0n;
    if (!queue.pop(first)) return false;
    if (!mergeable) {
      if (first.writableBytes < frame.length) {
        // 5.1.6.3.1: without MRG_RXBUF each buffer must hold a whole packet. The driver broke
        // that rule: hand the buffer back empty and drop the frame.
        queue.pushUsed(first.head, 0);
        this.metrics.rxDropped++;
        this.rxPending = 0;
        return true;
      }
      frame[NUM_BUFFERS_OFFSET] = 1;
      frame[NUM_BUFFERS_OFFSET + 1] = 0;
      first.writeTo(memory, 0, frame);
      queue.pushUsed(first.head, frame.length);
      this.finishFrame();
      return true;
    }
    // 5.1.6.4: with MRG_RXBUF the first buffer must hold at least the header.
    let chains = 1;
    let offset = first.writeTo(memory, 0, frame);
    if (offset < NET_HEADER_SIZE) {
      queue.pushUsed(first.head, 0);
      this.metrics.rxDropped++;
      this.rxPending = 0;
      return true;
    }
    this.usedHeads[0] = first.head;
    this.usedLengths[0] = offset;
    const chain = this.chains[RX_QUEUE]!;
    while (offset < frame.length) {
      if (chains >= this.usedHeads.length) {
        // The whole ring cannot hold this frame (tiny buffers): drop it, keep the buffers.
        for (let i = 0; i < chains; i++) queue.undoPop();
        this.metrics.rxDropped++;
        this.rxPending = 0;
        return true;
      }
      if (!queue.pop(chain)) {
        // Not enough buffers yet: give them all back and retry the whole frame later.
        for (let i = 0; i < chains; i++) queue.undoPop();
        return false;
      }
      const n = chain.writeTo(memory, 0, frame.subarray(offset));
      if (n === 0) {
        // A chain with no writable bytes cannot carry anything: return it empty.
        this.usedHeads[chains] = chain.head;
        this.usedLengths[chains] = 0;
      } else {
        this.usedHeads[chains] = chain.head;
        this.usedLengths[chains] = n;
      }
      offset += n;
      chains++;
    }
    this.numBuffers[0] = chains & 0xff;
    this.numBuffers[1] = chains >>> 8;
    first.writeTo(memory, NUM_BUFFERS_OFFSET, this.numBuffers);
    for (let i = 0; i < chains; i++) queue.pushUsed(this.usedHeads[i]!, this.usedLengths[i]!);
    this.finishFrame();
    return true;
  }

  private finishFrame(): void {
    this.metrics.rxFrames++;
    this.rxPending = 0;
  }

  /** One tx chain: header + frame, device-readable, written to the tap as one frame. */
  private transmit(chain: DescriptorChain, memory: GuestMemory): number {
    const length = chain.readableBytes;
    if (length < NET_HEADER_SIZE || length > this.txBuffer.length) {
      this.metrics.txDropped++;
      return 0;
    }
    chain.readFrom(memory, 0, this.txBuffer.subarray(0, length));
    if (this.tap.write(this.txBuffer.subarray(0, length))) this.metrics.txFrames++;
    else this.metrics.txDropped++;
    return 0;
  }
}

function parseMac(mac: string | Uint8Array | undefined): Uint8Array {
  if (mac === undefined) {
    const bytes = randomBytes(6);
    bytes[0] = (bytes[0]! & 0xfe) | 0x02; // unicast, locally administered
    return new Uint8Array(bytes);
  }
  if (mac instanceof Uint8Array) {
    if (mac.length !== 6) throw new InputError(`a MAC address has 6 bytes, got ${mac.length}`);
    return new Uint8Array(mac);
  }
  const parts = mac.split(':');
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) throw new InputError(`not a MAC address: "${mac}"`);
  return new Uint8Array(parts.map((p) => parseInt(p, 16)));
}
