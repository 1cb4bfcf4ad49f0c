// The contract between a virtio device model and whatever transports it (virtio-pci,
// virtio-mmio, vhost-user). A device model sees guest memory, its queues and an interrupt
// callback: nothing else (no KVM, no sockets, no addresses of its own).
import type { GuestMemory } from '../memory/guest-memory.js';

/** Device status bits, virtio 1.2 section 2.1. */
export const enum DeviceStatus {
  Acknowledge = 1,
  Driver = 2,
  DriverOk = 4,
  FeaturesOk = 8,
  DeviceNeedsReset = 64,
  Failed = 128,
}

/** Where a driver put one virtqueue, as the transport learned it (virtio 1.2 section 2.7/2.8). */
export interface QueueConfig {
  readonly size: number;
  /** Descriptor table (split) or descriptor ring (packed). */
  readonly descAddr: number;
  /** Available ring (split) or driver event suppression area (packed). */
  readonly driverAddr: number;
  /** Used ring (split) or device event suppression area (packed). */
  readonly deviceAddr: number;
}

/** What the transport hands a device when the driver sets DRIVER_OK. */
export interface ActivationContext {
  readonly memory: GuestMemory;
  /** Negotiated feature bits (device and driver agreed). */
  readonly features: bigint;
  /** Indexed by queue number; undefined for queues the driver did not enable. */
  readonly queues: ReadonlyArray<QueueConfig | undefined>;
  /** Signal "used buffers" on a queue (the transport maps it to MSI-X vector, INTx or callfd). */
  readonly notifyQueue: (queueIndex: number) => void;
  /** Signal a configuration change. */
  readonly notifyConfig: () => void;
  /** The device found the driver broken (bad descriptor...): sets DEVICE_NEEDS_RESET. */
  readonly needsReset: (reason: string) => void;
}

export interface VirtioDeviceModel {
  /** Virtio device ID (1 net, 2 block, 3 console, 4 rng, 19 vsock, 26 fs, 9 9p...). */
  readonly deviceType: number;
  /** Maximum size of each queue; its length is the number of queues. */
  readonly queueMaxSizes: readonly number[];
  /** Feature bits offered, including VIRTIO_F_VERSION_1 and transport-independent ones. */
  readonly deviceFeatures: bigint;
  /** Device-specific configuration space (virtio 1.2 section 5.x.4). */
  readonly configSize: number;
  readConfig(offset: number, data: Uint8Array): void;
  writeConfig(offset: number, data: Uint8Array): void;
  /** The driver set DRIVER_OK: start processing. */
  activate(context: ActivationContext): void;
  /** The driver notified (kicked) a queue. */
  notify(queueIndex: number): void;
  /** The driver reset the device (status 0): drop all queue state, keep configuration. */
  reset(): void;
}
