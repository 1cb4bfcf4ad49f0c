// Messages between a QueueThreadDevice (main thread) and its queue thread. Commands go over a
// MessagePort the thread reads with receiveMessageOnPort after its control eventfd fired (it
// never runs its event loop while serving); a synchronous command is answered on a second port
// and acknowledged through a SharedArrayBuffer the main thread waits on with Atomics.wait.
import type { VirtioDeviceModel } from '../virtio/device.js';
import type { QueuePosition } from '../virtio/devices/queue-device.js';

/** A guest RAM region as the queue thread maps it: the mapping is process-wide, so a host address is enough. */
export interface SharedRegion {
  readonly start: number;
  readonly size: number;
  readonly hostAddress: bigint;
}

export interface SharedQueueStart {
  readonly size: number;
  readonly descAddr: number;
  readonly driverAddr: number;
  readonly deviceAddr: number;
  readonly nextAvail?: number;
  readonly nextUsed?: number;
}

export type ThreadCommand =
  | { readonly op: 'activate'; readonly regions: readonly SharedRegion[]; readonly features: bigint; readonly queues: ReadonlyArray<SharedQueueStart | undefined> }
  | { readonly op: 'reset' }
  | { readonly op: 'notify'; readonly index: number }
  | { readonly op: 'quiesce'; readonly index: number }
  | { readonly op: 'position'; readonly index: number }
  /** The ring's descriptors, already duplicated for the thread (it closes them); -1 for none. */
  | { readonly op: 'files'; readonly index: number; readonly kick: number; readonly call: number }
  | { readonly op: 'write-config'; readonly offset: number; readonly data: Uint8Array }
  | { readonly op: 'summary' }
  | { readonly op: 'stop' };

/** The answer to a synchronous command (every command but notify). */
export type ThreadReply =
  | { readonly seq: number; readonly ok: true; readonly position?: QueuePosition | undefined; readonly config?: Uint8Array; readonly summary?: string }
  | { readonly seq: number; readonly ok: false; readonly error: string };

/** Events the thread reports on its own (parentPort). */
export type ThreadEvent =
  | { readonly event: 'ready'; readonly description: HostedDescription }
  | { readonly event: 'failed'; readonly message: string; readonly input: boolean }
  | { readonly event: 'needs-reset'; readonly reason: string }
  | { readonly event: 'config-changed' }
  | { readonly event: 'stopped' };

/** What the main thread needs to know of the device to speak vhost-user for it. */
export interface HostedDescription {
  readonly deviceType: number;
  readonly queueMaxSizes: readonly number[];
  readonly deviceFeatures: bigint;
  readonly configSize: number;
  readonly config: Uint8Array;
}

/** Int32 slots of the shared control block. */
export const enum ControlSlot {
  /** Sequence number of the last synchronous command the thread finished. */
  Acked = 0,
  /** 1 once the thread is ending (set on its way out, whatever the reason; Acked is notified). */
  Gone = 1,
}
export const CONTROL_SLOTS = 4;

/** What a device module loaded into the queue thread exports as `createHostedDevice`. */
export interface HostedDevice {
  /** A novm QueueDevice (or anything with the same surface). */
  readonly device: HostedQueueDevice;
  /** One line of counters (vhost-user --stats). */
  summary?(): string;
  /** The thread is ending: release what the device holds. */
  close?(): void;
  /** True if a queue run yielded with requests left (the thread then polls without blocking). */
  hasDeferredWork?(): boolean;
  /** Continues the runs that yielded. */
  resumeDeferred?(): void;
  /** An eventfd the thread polls beside the kicks: work the device handed to other threads
   *  (fs: inode creation, large copy-ups) has finished. The thread drains it, then calls
   *  onCompletion, which finishes those requests. */
  readonly completionFd?: number;
  onCompletion?(): void;
  /** Blocks until no request is in flight on other threads (before reset, quiesce, activate, stop). */
  drain?(): void;
  /** Rings the device reads without kicks while it is busy (fs: FORGETs): the thread calls
   *  poll() after every wake-up and, while pending() holds, sleeps at most QUIET_IDLE_MS before
   *  calling settle(), which gives the driver its kicks back. */
  readonly quietQueues?: { pending(): boolean; poll(): void; settle(): void };
  /** Runs before the first activation, while the front end boots its guest: exercises the
   *  device's code on a private copy so the guest's first requests run optimised (fs). Stops as
   *  soon as shouldStop() says so (checked between rounds). Returns a --stats fragment. */
  warmUp?(shouldStop: () => boolean): string;
}

/** A novm QueueDevice as the thread drives it: a device model that also reports its rings. */
export interface HostedQueueDevice extends VirtioDeviceModel {
  quiesce?(index: number): Promise<void> | undefined;
  queuePosition?(index: number): QueuePosition | undefined;
  /** Busy polling (QueueDevice.startPolling and the rest): rings watched without kicks. */
  startPolling?(): void;
  stopPolling?(): boolean;
  hasAvailable?(): boolean;
  pollQueues?(): void;
}

export type HostedDeviceFactory = (options: unknown) => HostedDevice | Promise<HostedDevice>;
