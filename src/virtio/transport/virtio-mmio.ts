// virtio over MMIO, version 2 (virtio 1.2 section 4.2): a 4 KiB register window, registers
// below 0x100 read and written as aligned 32-bit words only (4.2.2.2), device configuration
// from 0x100. One interrupt line; InterruptStatus says why (bit 0 used buffer, bit 1 config).
// All queues share QueueNotify: the machine's ioeventfd uses datamatch on the queue index.
import type { InterruptLine } from '../../bus/bus-device.js';
import type { BusDevice } from '../../bus/bus-device.js';
import type { GuestMemory } from '../../memory/guest-memory.js';
import { silentLog, type GuestLog } from '../../pci/guest-log.js';
import type { VirtioDeviceModel } from '../device.js';
import { VirtioTransportCore, type TransportCoreState, type TransportSignals } from './transport-core.js';

/** JSON-safe snapshot of a virtio-mmio device (DESIGN rule 7). */
export interface VirtioMmioState {
  readonly core: TransportCoreState;
  readonly interruptStatus: number;
}

export const VIRTIO_MMIO_MAGIC = 0x74726976; // "virt"
export const VIRTIO_MMIO_VERSION = 2;
/** "NOVM" as little-endian bytes: the VendorID register (4.2.2: any value). */
export const VIRTIO_MMIO_VENDOR_ID = 0x4d564f4e;
export const VIRTIO_MMIO_SIZE = 0x1000;
export const VIRTIO_MMIO_CONFIG_OFFSET = 0x100;

/** Register offsets (4.2.2, table "MMIO Device Register Layout"). */
export const enum MmioRegister {
  MagicValue = 0x000,
  Version = 0x004,
  DeviceId = 0x008,
  VendorId = 0x00c,
  DeviceFeatures = 0x010,
  DeviceFeaturesSel = 0x014,
  DriverFeatures = 0x020,
  DriverFeaturesSel = 0x024,
  QueueSel = 0x030,
  QueueNumMax = 0x034,
  QueueNum = 0x038,
  QueueReady = 0x044,
  QueueNotify = 0x050,
  InterruptStatus = 0x060,
  InterruptAck = 0x064,
  Status = 0x070,
  QueueDescLow = 0x080,
  QueueDescHigh = 0x084,
  QueueDriverLow = 0x090,
  QueueDriverHigh = 0x094,
  QueueDeviceLow = 0x0a0,
  QueueDeviceHigh = 0x0a4,
  ShmSel = 0x0ac,
  ShmLenLow = 0x0b0,
  ShmLenHigh = 0x0b4,
  ShmBaseLow = 0x0b8,
  ShmBaseHigh = 0x0bc,
  QueueReset = 0x0c0,
  ConfigGeneration = 0x0fc,
}

export const INTERRUPT_USED_BUFFER = 1;
export const INTERRUPT_CONFIG_CHANGE = 2;

export interface VirtioMmioOptions {
  readonly memory: GuestMemory;
  readonly interrupt: InterruptLine;
  /** 'level': line high while InterruptStatus != 0; 'edge': one trigger() per new interrupt. */
  readonly triggerMode?: 'level' | 'edge';
  readonly log?: GuestLog;
}

export class VirtioMmioDevice implements BusDevice {
  static readonly QUEUE_NOTIFY_OFFSET = MmioRegister.QueueNotify;
  readonly transport: VirtioTransportCore;
  private readonly line: InterruptLine;
  private readonly level: boolean;
  private interruptStatus = 0;
  private lineHigh = false;
  private readonly word = new DataView(new ArrayBuffer(4));

  constructor(readonly device: VirtioDeviceModel, options: VirtioMmioOptions) {
    if (device.configSize > VIRTIO_MMIO_SIZE - VIRTIO_MMIO_CONFIG_OFFSET) throw new RangeError(`device config space of ${device.configSize} bytes does not fit virtio-mmio`);
    this.line = options.interrupt;
    this.level = (options.triggerMode ?? 'level') === 'level';
    const signals: TransportSignals = {
      queueInterrupt: () => this.raise(INTERRUPT_USED_BUFFER),
      configInterrupt: () => this.raise(INTERRUPT_CONFIG_CHANGE),
      resetInterrupts: () => {
        this.interruptStatus = 0;
        this.updateLine();
      },
    };
    this.transport = new VirtioTransportCore(device, options.memory, signals, options.log ?? silentLog);
  }

  state(): VirtioMmioState {
    return { core: this.transport.state(), interruptStatus: this.interruptStatus };
  }

  /** Loads a snapshot into this freshly built device; a pending interrupt is raised again. */
  restore(state: VirtioMmioState): void {
    this.transport.restore(state.core, () => {
      this.interruptStatus = typeof state.interruptStatus === 'number' ? state.interruptStatus & 3 : 0;
      if (this.level) this.updateLine();
      else if (this.interruptStatus !== 0) this.line.trigger();
    });
  }

  /** Guest physical address of QueueNotify for a device registered at `base`. */
  static notifyAddress(base: number): number {
    return base + MmioRegister.QueueNotify;
  }

  /** A notification that did not come through the register (an ioeventfd). */
  queueNotified(queueIndex: number): void {
    this.transport.queueNotified(queueIndex);
  }

  read(offset: number, data: Uint8Array): void {
    if (offset >= VIRTIO_MMIO_CONFIG_OFFSET) {
      if (offset + data.length > VIRTIO_MMIO_SIZE) {
        data.fill(0xff);
        return;
      }
      this.transport.readConfig(offset - VIRTIO_MMIO_CONFIG_OFFSET, data);
      return;
    }
    if (data.length !== 4 || offset % 4 !== 0 || offset < 0) {
      this.transport.guestError(`register read of ${data.length} bytes at 0x${offset.toString(16)}: only aligned 32-bit accesses (4.2.2.2)`);
      data.fill(0);
      return;
    }
    const value = this.readRegister(offset);
    this.word.setUint32(0, value >>> 0, true);
    data[0] = this.word.getUint8(0);
    data[1] = this.word.getUint8(1);
    data[2] = this.word.getUint8(2);
    data[3] = this.word.getUint8(3);
  }

  write(offset: number, data: Uint8Array): void {
    if (offset >= VIRTIO_MMIO_CONFIG_OFFSET) {
      if (offset + data.length > VIRTIO_MMIO_SIZE) return;
      this.transport.writeConfig(offset - VIRTIO_MMIO_CONFIG_OFFSET, data);
      return;
    }
    if (data.length !== 4 || offset % 4 !== 0 || offset < 0) {
      this.transport.guestError(`register write of ${data.length} bytes at 0x${offset.toString(16)}: only aligned 32-bit accesses (4.2.2.2)`);
      return;
    }
    const value = (data[0]! | (data[1]! << 8) | (data[2]! << 16) | (data[3]! << 24)) >>> 0;
    this.writeRegister(offset, value);
  }

  private readRegister(offset: number): number {
    const t = this.transport;
    const q = t.selectedQueue();
    switch (offset) {
      case MmioRegister.MagicValue: return VIRTIO_MMIO_MAGIC;
      case MmioRegister.Version: return VIRTIO_MMIO_VERSION;
      case MmioRegister.DeviceId: return this.device.deviceType;
      case MmioRegister.VendorId: return VIRTIO_MMIO_VENDOR_ID;
      case MmioRegister.DeviceFeatures: return t.deviceFeatureWord();
      case MmioRegister.QueueNumMax: return q === undefined ? 0 : (this.device.queueMaxSizes[t.queueSelect] ?? 0);
      case MmioRegister.QueueReady: return q?.ready === true ? 1 : 0;
      case MmioRegister.InterruptStatus: return this.interruptStatus;
      case MmioRegister.Status: return t.status;
      // 4.2.2: no shared memory regions: a length of all-ones says "this region does not exist".
      case MmioRegister.ShmLenLow: case MmioRegister.ShmLenHigh: return 0xffff_ffff;
      case MmioRegister.ShmBaseLow: case MmioRegister.ShmBaseHigh: return 0xffff_ffff;
      case MmioRegister.QueueReset: return 0;
      case MmioRegister.ConfigGeneration: return t.configGeneration;
      default:
        t.guestError(`read of write-only or reserved register 0x${offset.toString(16)}`);
        return 0;
    }
  }

  private writeRegister(offset: number, value: number): void {
    const t = this.transport;
    switch (offset) {
      case MmioRegister.DeviceFeaturesSel: t.deviceFeatureSelect = value; return;
      case MmioRegister.DriverFeatures: t.writeDriverFeatureWord(value); return;
      case MmioRegister.DriverFeaturesSel: t.driverFeatureSelect = value; return;
      case MmioRegister.QueueSel: t.queueSelect = value; return;
      case MmioRegister.QueueNum: t.writeQueueSize(value); return;
      case MmioRegister.QueueReady: t.writeQueueReady(value === 1); return;
      case MmioRegister.QueueNotify: t.queueNotified(value); return;
      case MmioRegister.InterruptAck:
        this.interruptStatus &= ~value;
        this.updateLine();
        return;
      case MmioRegister.Status: t.writeStatus(value); return;
      case MmioRegister.QueueDescLow: t.writeQueueAddress('desc', false, value); return;
      case MmioRegister.QueueDescHigh: t.writeQueueAddress('desc', true, value); return;
      case MmioRegister.QueueDriverLow: t.writeQueueAddress('driver', false, value); return;
      case MmioRegister.QueueDriverHigh: t.writeQueueAddress('driver', true, value); return;
      case MmioRegister.QueueDeviceLow: t.writeQueueAddress('device', false, value); return;
      case MmioRegister.QueueDeviceHigh: t.writeQueueAddress('device', true, value); return;
      case MmioRegister.ShmSel: return;
      default:
        t.guestError(`write of read-only or reserved register 0x${offset.toString(16)}`);
    }
  }

  private raise(bit: number): void {
    this.interruptStatus |= bit;
    if (this.level) this.updateLine();
    else this.line.trigger();
  }

  private updateLine(): void {
    if (!this.level) return;
    const high = this.interruptStatus !== 0;
    if (high === this.lineHigh) return;
    this.lineHigh = high;
    this.line.setLevel(high);
  }

  get pendingInterrupts(): number {
    return this.interruptStatus;
  }
}
