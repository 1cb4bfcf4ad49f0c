// Shared plumbing for novm's virtio device models: queue setup at activation, the standard
// drain loop with notification suppression, and the rule that a broken driver puts the device
// in DEVICE_NEEDS_RESET (logged once) instead of throwing into the transport.
import type { GuestMemory } from '../../memory/guest-memory.js';
import type { ActivationContext, VirtioDeviceModel } from '../device.js';
import { DescriptorChain } from '../queue/descriptor-chain.js';
import { isQueueViolation } from '../queue/errors.js';
import { QUEUE_FEATURES, VIRTIO_F_RING_PACKED } from '../queue/features.js';
import type { QueueStart } from '../queue/split-queue.js';
import { createQueue, type VirtQueue } from '../queue/virt-queue.js';

export type Logger = (line: string) => void;

export const stderrLogger: Logger = (line) => process.stderr.write(`${line}\n`);

/** Where a queue's indices stand: what vhost-user GET_VRING_BASE reports. */
export interface QueuePosition {
  readonly nextAvail: number;
  readonly nextUsed: number;
}

export interface DeviceOptions {
  /** Where the one line about a broken driver goes. */
  readonly log?: Logger;
  /** Offer VIRTIO_F_RING_PACKED (§2.8) as well as split rings. */
  readonly packedRing?: boolean;
}

/** The transport-independent features a device offers for these options. */
export function queueFeatures(options: DeviceOptions): bigint {
  return QUEUE_FEATURES | (options.packedRing === true ? VIRTIO_F_RING_PACKED : 0n);
}

export abstract class QueueDevice implements VirtioDeviceModel {
  abstract readonly deviceType: number;
  abstract readonly queueMaxSizes: readonly number[];
  abstract readonly deviceFeatures: bigint;
  abstract readonly configSize: number;
  abstract readConfig(offset: number, data: Uint8Array): void;
  abstract writeConfig(offset: number, data: Uint8Array): void;

  protected context: ActivationContext | undefined;
  protected memory: GuestMemory | undefined;
  protected features = 0n;
  protected queues: Array<VirtQueue | undefined> = [];
  protected chains: Array<DescriptorChain | undefined> = [];
  private broken = false;
  /** Queues being stopped (quiesce): kicks are ignored until the next activation. */
  protected readonly paused = new Set<number>();
  /** Busy polling (startPolling): drained rings keep the driver's notifications off. */
  protected polling = false;
  protected readonly log: Logger;

  constructor(options: DeviceOptions = {}) {
    this.log = options.log ?? stderrLogger;
  }

  /** Device name for log lines. */
  protected abstract get name(): string;

  /** Called after the queues were built; a device starts its own work here. */
  protected onActivate(): void {}
  /** Called by reset(): drop per-activation state (in-flight requests...). */
  protected onReset(): void {}
  /** Serve queue `index` after a kick. Throw QueueViolation for a broken driver. */
  protected abstract processQueue(index: number): void;

  /** Features of the last activation (kept after reset, for metrics). */
  get negotiatedFeatures(): bigint {
    return this.features;
  }

  get isActive(): boolean {
    return this.context !== undefined && !this.broken;
  }

  get needsReset(): boolean {
    return this.broken;
  }

  activate(context: ActivationContext): void {
    this.reset();
    this.context = context;
    this.memory = context.memory;
    this.features = context.features;
    const count = this.queueMaxSizes.length;
    this.queues = new Array<VirtQueue | undefined>(count).fill(undefined);
    this.chains = new Array<DescriptorChain | undefined>(count).fill(undefined);
    try {
      for (let i = 0; i < count && i < context.queues.length; i++) {
        const config = context.queues[i] as QueueStart | undefined;
        if (config === undefined) continue;
        const max = this.queueMaxSizes[i]!;
        if (config.size > max) {
          this.fail(`queue ${i}: size ${config.size} exceeds the maximum ${max}`);
          return;
        }
        this.queues[i] = createQueue(config, context.memory, context.features);
        this.chains[i] = new DescriptorChain(config.size);
      }
      this.onActivate();
    } catch (error) {
      this.handleError(error);
    }
  }

  notify(queueIndex: number): void {
    if (!this.isActive || !Number.isInteger(queueIndex) || queueIndex < 0 || queueIndex >= this.queues.length) return;
    if (this.queues[queueIndex] === undefined || this.paused.has(queueIndex)) return;
    try {
      this.processQueue(queueIndex);
    } catch (error) {
      this.handleError(error);
    }
  }

  reset(): void {
    if (this.context !== undefined) this.onReset();
    this.context = undefined;
    this.memory = undefined;
    this.queues = [];
    this.chains = [];
    this.broken = false;
    this.paused.clear();
    this.polling = false;
  }

  /**
   * Busy polling, for a runner that watches the rings itself between requests (the vhost-user
   * queue thread's poll window): from now on a drained ring keeps the driver's notifications
   * off, so a driver adding a request does not kick (and the runner finds it with
   * hasAvailable). stopPolling() gives the kicks back.
   */
  startPolling(): void {
    this.polling = true;
  }

  /**
   * Ends busy polling: every ring gets its notifications back. Returns true if chains arrived
   * before the driver could see that (they would get no kick: serve them with pollQueues).
   */
  stopPolling(): boolean {
    this.polling = false;
    if (!this.isActive) return false;
    let raced = false;
    try {
      for (let i = 0; i < this.queues.length; i++) {
        const queue = this.queues[i];
        if (queue === undefined || this.paused.has(i) || this.keepsNotificationsOff(i)) continue;
        if (queue.enableNotifications()) raced = true;
      }
    } catch (error) {
      this.handleError(error);
      return false;
    }
    return raced;
  }

  /** True if a ring holds chains the device has not taken (one load per ring, no system call). */
  hasAvailable(): boolean {
    if (!this.isActive) return false;
    try {
      for (let i = 0; i < this.queues.length; i++) if (this.holdsChains(i)) return true;
    } catch (error) {
      this.handleError(error);
    }
    return false;
  }

  /** Serves every ring that holds chains, as a kick would. */
  pollQueues(): void {
    try {
      for (let i = 0; i < this.queues.length; i++) if (this.holdsChains(i)) this.notify(i);
    } catch (error) {
      this.handleError(error);
    }
  }

  /** Ring `index` is up, not being stopped, and holds chains. Throws QueueViolation. */
  private holdsChains(index: number): boolean {
    const queue = this.queues[index];
    return queue !== undefined && !this.paused.has(index) && queue.pending() !== 0;
  }

  /** A ring whose notifications the device itself keeps off (stopPolling leaves it alone). */
  protected keepsNotificationsOff(_index: number): boolean {
    return false;
  }

  /**
   * Stops taking requests from a queue (vhost-user GET_VRING_BASE). Devices that complete
   * requests later return a promise that resolves once those in flight reached the used ring;
   * synchronous devices are idle at once (undefined).
   */
  quiesce(index: number): Promise<void> | undefined {
    this.paused.add(index);
    return undefined;
  }

  /** Current ring indices of an active queue (vhost-user GET_VRING_BASE, snapshots). */
  queuePosition(index: number): QueuePosition | undefined {
    const q = this.queues[index];
    return q === undefined ? undefined : { nextAvail: q.nextAvail, nextUsed: q.nextUsed };
  }

  /** Marks the device broken: logs once, asks the transport for DEVICE_NEEDS_RESET. */
  protected fail(reason: string): void {
    if (this.broken) return;
    this.broken = true;
    this.log(`${this.name}: driver error, device needs reset: ${reason}`);
    this.context?.needsReset(reason);
  }

  /** Anything thrown while serving a guest ends as NEEDS_RESET, never as an exception. */
  protected handleError(error: unknown): void {
    if (isQueueViolation(error)) this.fail(error.message);
    else this.fail(`internal error: ${error instanceof Error ? error.message : String(error)}`);
  }

  /**
   * The standard loop: pop every available chain, let `handle` serve it and return the
   * number of bytes written to the guest, put it in the used ring, and notify once at the end
   * if the driver asked for it. `handle` returns -1 to keep the chain (it completes later with
   * completeLater) and stop draining. `quiet` leaves notifications off and signals nothing (the
   * caller polls the ring and signals when it chooses). Returns the chains used.
   */
  protected drain(index: number, handle: (chain: DescriptorChain, memory: GuestMemory) => number, quiet = false): number {
    const queue = this.queues[index];
    const chain = this.chains[index];
    const memory = this.memory;
    if (queue === undefined || chain === undefined || memory === undefined) return 0;
    let used = 0;
    try {
      for (;;) {
        queue.disableNotifications();
        while (queue.pop(chain)) {
          const written = handle(chain, memory);
          if (written < 0) {
            queue.undoPop();
            return used;
          }
          queue.pushUsed(chain.head, Math.min(written, chain.writableBytes));
          used++;
        }
        // Quiet or busy polling: the ring is watched without kicks, so they stay off.
        if (quiet || this.polling || !queue.enableNotifications()) break;
      }
    } finally {
      if (used > 0 && !quiet && !this.broken) this.signal(index);
    }
    return used;
  }

  /** Notifies the driver about used buffers on a queue if it wants to be notified. */
  protected signal(index: number): void {
    const queue = this.queues[index];
    if (queue !== undefined && this.context !== undefined && queue.needsNotification()) this.context.notifyQueue(index);
  }
}
