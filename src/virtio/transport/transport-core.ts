// What virtio-pci and virtio-mmio share: device status, feature negotiation, per-queue
// registers, activation on DRIVER_OK, reset, DEVICE_NEEDS_RESET. The two transports only map
// their register layouts onto this. Nothing the guest writes can throw out of here: a bad
// value is logged and ignored; a device that throws is put in DEVICE_NEEDS_RESET.
import type { GuestMemory } from '../../memory/guest-memory.js';
import { silentLog, type GuestLog } from '../../pci/guest-log.js';
import { DeviceStatus, type ActivationContext, type QueueConfig, type VirtioDeviceModel } from '../device.js';
import { classifyStatusWrite } from './device-status.js';

export const VIRTIO_F_VERSION_1 = 1n << 32n;
export const VIRTIO_F_RING_PACKED = 1n << 34n;
/**
 * Feature bits whose mechanism lives in the transport and that novm's transports do not
 * implement (virtio 1.2 section 6): ACCESS_PLATFORM (33), SR_IOV (37), NOTIFICATION_DATA (38),
 * NOTIF_CONFIG_DATA (39), RING_RESET (40), ADMIN_VQ (41). Never offered, whatever the device says.
 */
export const UNSUPPORTED_TRANSPORT_FEATURES = (1n << 33n) | (1n << 37n) | (1n << 38n) | (1n << 39n) | (1n << 40n) | (1n << 41n);
/** Feature words the select registers can reach (virtio 1.2 allows up to 128 bits in practice). */
const MAX_FEATURE_WORDS = 4;
const MAX_ADDRESS = 2 ** 53;

export interface QueueRegisters {
  size: number;
  ready: boolean;
  desc: number;
  driver: number;
  device: number;
}

/** How the transport delivers the two kinds of interrupts. */
export interface TransportSignals {
  queueInterrupt(queueIndex: number): void;
  configInterrupt(): void;
  /** Status went to 0: clear transport-specific interrupt state. */
  resetInterrupts(): void;
}

/** Where a running queue's indices stand (what a QueueDevice reports as queuePosition). */
export interface QueuePositionState {
  readonly nextAvail: number;
  readonly nextUsed: number;
}

/** A plain, JSON-safe snapshot of the shared transport state (DESIGN rule 7). */
export interface TransportCoreState {
  readonly status: number;
  readonly deviceFeatureSelect: number;
  readonly driverFeatureSelect: number;
  /** Hex, so the snapshot survives JSON. */
  readonly driverFeatures: string;
  readonly queueSelect: number;
  readonly configGeneration: number;
  readonly queues: ReadonlyArray<{ readonly size: number; readonly ready: boolean; readonly desc: number; readonly driver: number; readonly device: number }>;
  /** Ring positions of running queues, when the device could report them. */
  readonly positions: ReadonlyArray<QueuePositionState | null>;
}

export class TransportStateError extends Error {
  readonly kind = 'transport-state' as const;
  constructor(message: string) {
    super(`bad virtio transport snapshot: ${message}`);
    this.name = 'TransportStateError';
  }
}

/** A device that can say where its rings stand (every novm QueueDevice can). */
interface PositionReporter {
  queuePosition(index: number): QueuePositionState | undefined;
}

function reportsPositions(device: VirtioDeviceModel): device is VirtioDeviceModel & PositionReporter {
  return typeof (device as Partial<PositionReporter>).queuePosition === 'function';
}

export interface TransportMetrics {
  invalidAccesses: number;
  invalidTransitions: number;
  needsReset: number;
  activations: number;
}

export class VirtioTransportCore {
  status = 0;
  deviceFeatureSelect = 0;
  driverFeatureSelect = 0;
  driverFeatures = 0n;
  queueSelect = 0;
  configGeneration = 0;
  readonly offeredFeatures: bigint;
  readonly queues: QueueRegisters[];
  readonly metrics: TransportMetrics = { invalidAccesses: 0, invalidTransitions: 0, needsReset: 0, activations: 0 };
  /** Bumped on every reset so that callbacks from an old activation are dropped. */
  private epoch = 0;
  private active = false;

  constructor(
    readonly device: VirtioDeviceModel,
    private readonly memory: GuestMemory,
    private readonly signals: TransportSignals,
    private readonly log: GuestLog = silentLog,
  ) {
    this.offeredFeatures = (device.deviceFeatures | VIRTIO_F_VERSION_1) & ~UNSUPPORTED_TRANSPORT_FEATURES;
    this.queues = device.queueMaxSizes.map((max) => ({ size: max, ready: false, desc: 0, driver: 0, device: 0 }));
  }

  get isActive(): boolean {
    return this.active;
  }

  guestError(message: string): void {
    this.metrics.invalidAccesses++;
    this.log(message);
  }

  deviceFeatureWord(): number {
    const select = this.deviceFeatureSelect;
    if (select >= MAX_FEATURE_WORDS) return 0;
    return Number((this.offeredFeatures >> BigInt(32 * select)) & 0xffff_ffffn);
  }

  driverFeatureWord(): number {
    const select = this.driverFeatureSelect;
    if (select >= MAX_FEATURE_WORDS) return 0;
    return Number((this.driverFeatures >> BigInt(32 * select)) & 0xffff_ffffn);
  }

  /** virtio 1.2 section 3.1.1 step 5: features are written after DRIVER and before FEATURES_OK. */
  writeDriverFeatureWord(value: number): void {
    const select = this.driverFeatureSelect;
    if ((this.status & DeviceStatus.Driver) === 0 || (this.status & DeviceStatus.FeaturesOk) !== 0) {
      this.guestError(`driver features written in status 0x${this.status.toString(16)}; ignored`);
      return;
    }
    if (select >= MAX_FEATURE_WORDS) {
      this.guestError(`driver feature select ${select} out of range; ignored`);
      return;
    }
    const shift = BigInt(32 * select);
    this.driverFeatures = (this.driverFeatures & ~(0xffff_ffffn << shift)) | (BigInt(value >>> 0) << shift);
  }

  /** The queue `queueSelect` designates, or undefined when it does not exist. */
  selectedQueue(): QueueRegisters | undefined {
    return this.queues[this.queueSelect];
  }

  /** A queue's registers may change only before DRIVER_OK and while it is not enabled (4.1.4.3.2). */
  writableQueue(what: string): QueueRegisters | undefined {
    const queue = this.selectedQueue();
    if (queue === undefined) {
      this.guestError(`${what}: queue ${this.queueSelect} does not exist`);
      return undefined;
    }
    if ((this.status & DeviceStatus.DriverOk) !== 0 || (this.status & DeviceStatus.Failed) !== 0 || queue.ready) {
      this.guestError(`${what}: queue ${this.queueSelect} is not configurable now`);
      return undefined;
    }
    return queue;
  }

  writeQueueSize(value: number): void {
    const queue = this.writableQueue('queue size');
    if (queue === undefined) return;
    const max = this.device.queueMaxSizes[this.queueSelect] ?? 0;
    if (value === 0 || value > max) {
      this.guestError(`queue ${this.queueSelect}: size ${value} outside [1, ${max}]`);
      return;
    }
    queue.size = value;
  }

  /** Sets the low or high 32 bits of a ring address. */
  writeQueueAddress(field: 'desc' | 'driver' | 'device', high: boolean, value: number): void {
    const queue = this.writableQueue(`queue ${field} address`);
    if (queue === undefined) return;
    const current = queue[field];
    const low = current % 2 ** 32;
    const hi = Math.floor(current / 2 ** 32);
    const next = high ? (value >>> 0) * 2 ** 32 + low : hi * 2 ** 32 + (value >>> 0);
    // Above 2^53 a double cannot hold the address; no guest RAM is there anyway. Keep the
    // value saturated so activation refuses the queue.
    queue[field] = Math.min(next, MAX_ADDRESS);
  }

  writeQueueReady(ready: boolean): void {
    const queue = this.selectedQueue();
    if (queue === undefined) {
      this.guestError(`queue ready: queue ${this.queueSelect} does not exist`);
      return;
    }
    if ((this.status & DeviceStatus.DriverOk) !== 0) {
      this.guestError(`queue ${this.queueSelect}: ready changed after DRIVER_OK; ignored`);
      return;
    }
    queue.ready = ready;
  }

  writeStatus(value: number): void {
    const written = value & 0xff & ~DeviceStatus.DeviceNeedsReset;
    const current = this.status & ~DeviceStatus.DeviceNeedsReset;
    const step = classifyStatusWrite(current, written);
    switch (step.kind) {
      case 'reset':
        this.reset();
        return;
      case 'unchanged':
        return;
      case 'invalid':
        this.metrics.invalidTransitions++;
        this.log(`invalid status transition 0x${current.toString(16)} -> 0x${written.toString(16)}; ignored`);
        return;
      case 'failed':
        this.status |= DeviceStatus.Failed;
        return;
      case 'features-ok':
        if (!this.featuresAcceptable()) {
          // 3.1.1 step 6: the device does not set FEATURES_OK; the driver reads it back.
          this.log(`driver features 0x${this.driverFeatures.toString(16)} not acceptable; FEATURES_OK refused`);
          return;
        }
        this.status = (this.status & DeviceStatus.DeviceNeedsReset) | written;
        return;
      case 'driver-ok':
        this.status = (this.status & DeviceStatus.DeviceNeedsReset) | written;
        this.activate();
        return;
      case 'acknowledge':
      case 'driver':
        this.status = (this.status & DeviceStatus.DeviceNeedsReset) | written;
        return;
    }
  }

  private featuresAcceptable(): boolean {
    const features = this.driverFeatures;
    return (features & ~this.offeredFeatures) === 0n && (features & VIRTIO_F_VERSION_1) !== 0n;
  }

  state(): TransportCoreState {
    const positions: Array<QueuePositionState | null> = this.queues.map((_, i) => {
      if (!this.active || !reportsPositions(this.device)) return null;
      const p = this.device.queuePosition(i);
      return p === undefined ? null : { nextAvail: p.nextAvail, nextUsed: p.nextUsed };
    });
    return {
      status: this.status,
      deviceFeatureSelect: this.deviceFeatureSelect,
      driverFeatureSelect: this.driverFeatureSelect,
      driverFeatures: this.driverFeatures.toString(16),
      queueSelect: this.queueSelect,
      configGeneration: this.configGeneration,
      queues: this.queues.map((q) => ({ size: q.size, ready: q.ready, desc: q.desc, driver: q.driver, device: q.device })),
      positions,
    };
  }

  /** Validates a snapshot without touching anything; throws TransportStateError. */
  checkState(state: TransportCoreState): { status: number; features: bigint } {
    const u32 = (v: unknown, what: string): number => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffff_ffff) throw new TransportStateError(`${what} = ${String(v)}`);
      return v;
    };
    if (!Array.isArray(state.queues) || state.queues.length !== this.queues.length) throw new TransportStateError(`${String(state.queues?.length)} queues, device has ${this.queues.length}`);
    if (!Array.isArray(state.positions) || state.positions.length !== this.queues.length) throw new TransportStateError('positions do not match the queues');
    if (typeof state.driverFeatures !== 'string' || !/^[0-9a-f]{1,32}$/.test(state.driverFeatures)) throw new TransportStateError(`driverFeatures = ${String(state.driverFeatures)}`);
    const status = u32(state.status, 'status');
    if (status > 0xff) throw new TransportStateError(`status = ${status}`);
    const features = BigInt(`0x${state.driverFeatures}`);
    if ((features & ~this.offeredFeatures) !== 0n) throw new TransportStateError('driver features the device does not offer');
    for (const v of [state.deviceFeatureSelect, state.driverFeatureSelect, state.queueSelect, state.configGeneration]) u32(v, 'a select or generation register');
    state.queues.forEach((q, i) => {
      const max = this.device.queueMaxSizes[i] ?? 0;
      if (u32(q.size, `queue ${i} size`) > max) throw new TransportStateError(`queue ${i} size ${q.size} > ${max}`);
      for (const a of [q.desc, q.driver, q.device]) {
        if (typeof a !== 'number' || !Number.isSafeInteger(a) || a < 0 || a > MAX_ADDRESS) throw new TransportStateError(`queue ${i} address ${String(a)}`);
      }
    });
    for (const p of state.positions) {
      if (p !== null && (typeof p !== 'object' || !Number.isInteger(p.nextAvail) || !Number.isInteger(p.nextUsed))) throw new TransportStateError('a ring position is not a pair of integers');
    }
    return { status, features };
  }

  /**
   * Loads a snapshot taken from a transport over the same kind of device. A device that was
   * running (DRIVER_OK, no NEEDS_RESET) is activated again, its queues resuming at the saved
   * ring positions. Throws TransportStateError for a snapshot that does not fit.
   */
  restore(state: TransportCoreState, beforeActivate?: () => void): void {
    const { status, features } = this.checkState(state);
    this.reset();
    this.status = status;
    this.deviceFeatureSelect = state.deviceFeatureSelect;
    this.driverFeatureSelect = state.driverFeatureSelect;
    this.driverFeatures = features;
    this.queueSelect = state.queueSelect;
    this.configGeneration = state.configGeneration & 0xff;
    state.queues.forEach((q, i) => Object.assign(this.queues[i]!, { size: q.size, ready: q.ready === true, desc: q.desc, driver: q.driver, device: q.device }));
    // The transport's own interrupt routing comes back before the device can signal.
    beforeActivate?.();
    if ((status & DeviceStatus.DriverOk) !== 0 && (status & (DeviceStatus.DeviceNeedsReset | DeviceStatus.Failed)) === 0) {
      this.activate(state.positions);
    }
  }

  private activate(positions?: ReadonlyArray<QueuePositionState | null>): void {
    const queues: Array<QueueConfig | undefined> = [];
    const packed = (this.driverFeatures & VIRTIO_F_RING_PACKED) !== 0n;
    for (let i = 0; i < this.queues.length; i++) {
      const q = this.queues[i]!;
      if (!q.ready) {
        queues.push(undefined);
        continue;
      }
      const problem = queueProblem(q, this.device.queueMaxSizes[i] ?? 0, packed);
      if (problem !== undefined) {
        this.needsReset(`queue ${i}: ${problem}`);
        return;
      }
      const at = positions?.[i];
      queues.push(at === null || at === undefined
        ? { size: q.size, descAddr: q.desc, driverAddr: q.driver, deviceAddr: q.device }
        : { size: q.size, descAddr: q.desc, driverAddr: q.driver, deviceAddr: q.device, nextAvail: at.nextAvail & 0xffff, nextUsed: at.nextUsed & 0xffff } as QueueConfig);
    }
    const epoch = this.epoch;
    const context: ActivationContext = {
      memory: this.memory,
      features: this.driverFeatures,
      queues,
      notifyQueue: (queueIndex) => {
        if (epoch === this.epoch && this.active && Number.isInteger(queueIndex) && queueIndex >= 0 && queueIndex < this.queues.length) {
          this.signals.queueInterrupt(queueIndex);
        }
      },
      notifyConfig: () => {
        if (epoch !== this.epoch) return;
        this.configGeneration = (this.configGeneration + 1) & 0xff;
        this.signals.configInterrupt();
      },
      needsReset: (reason) => {
        if (epoch === this.epoch) this.needsReset(reason);
      },
    };
    // Active before the call: a device may signal (or ask for a reset) from inside activate().
    this.active = true;
    this.metrics.activations++;
    try {
      this.device.activate(context);
    } catch (error: unknown) {
      this.needsReset(`activation failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  /** Queue notification from a register write or an ioeventfd. */
  queueNotified(queueIndex: number): void {
    if (!this.active || (this.status & DeviceStatus.DeviceNeedsReset) !== 0) {
      this.guestError(`notify of queue ${queueIndex} while the device is not running`);
      return;
    }
    const queue = this.queues[queueIndex];
    if (queue === undefined || !queue.ready) {
      this.guestError(`notify of queue ${queueIndex}, which is not enabled`);
      return;
    }
    try {
      this.device.notify(queueIndex);
    } catch (error: unknown) {
      this.needsReset(`queue ${queueIndex}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  /** virtio 1.2 section 2.1.2: DEVICE_NEEDS_RESET, with a config interrupt once DRIVER_OK. */
  needsReset(reason: string): void {
    this.metrics.needsReset++;
    this.log(`device needs reset: ${reason}`);
    if ((this.status & DeviceStatus.DeviceNeedsReset) !== 0) return;
    this.status |= DeviceStatus.DeviceNeedsReset;
    // The device is not reset here: this may run inside the device's own call stack. It stays
    // quiet (notifications and its callbacks are dropped) until the driver writes status 0.
    this.active = false;
    if ((this.status & DeviceStatus.DriverOk) !== 0) {
      this.configGeneration = (this.configGeneration + 1) & 0xff;
      this.signals.configInterrupt();
    }
  }

  /** Status 0: back to the state after power-on. Synchronous, so status reads 0 at once. */
  reset(): void {
    this.epoch++;
    try {
      this.device.reset();
    } catch (error: unknown) {
      this.log(`device reset failed: ${error instanceof Error ? error.message : String(error)}`);
    }
    this.active = false;
    this.status = 0;
    this.deviceFeatureSelect = 0;
    this.driverFeatureSelect = 0;
    this.driverFeatures = 0n;
    this.queueSelect = 0;
    for (let i = 0; i < this.queues.length; i++) {
      const q = this.queues[i]!;
      q.size = this.device.queueMaxSizes[i] ?? 0;
      q.ready = false;
      q.desc = 0;
      q.driver = 0;
      q.device = 0;
    }
    this.signals.resetInterrupts();
  }

  readConfig(offset: number, data: Uint8Array): void {
    if (!Number.isInteger(offset) || offset < 0 || offset + data.length > this.device.configSize) {
      this.guestError(`config read of ${data.length} bytes at ${offset} outside ${this.device.configSize} bytes`);
      data.fill(0);
      return;
    }
    try {
      this.device.readConfig(offset, data);
    } catch (error: unknown) {
      data.fill(0);
      this.guestError(`config read failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  writeConfig(offset: number, data: Uint8Array): void {
    if (!Number.isInteger(offset) || offset < 0 || offset + data.length > this.device.configSize) {
      this.guestError(`config write of ${data.length} bytes at ${offset} outside ${this.device.configSize} bytes`);
      return;
    }
    try {
      this.device.writeConfig(offset, data);
    } catch (error: unknown) {
      this.guestError(`config write failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}

/** Why an enabled queue cannot be handed to the device (virtio 1.2 sections 2.7, 2.8). */
function queueProblem(q: QueueRegisters, max: number, packed: boolean): string | undefined {
  if (q.size < 1 || q.size > max) return `size ${q.size} outside [1, ${max}]`;
  if (!packed && (q.size & (q.size - 1)) !== 0) return `size ${q.size} is not a power of 2 (2.7)`;
  for (const address of [q.desc, q.driver, q.device]) {
    if (!Number.isSafeInteger(address) || address >= MAX_ADDRESS) return `ring address 0x${address.toString(16)} out of range`;
  }
  return undefined;
}
