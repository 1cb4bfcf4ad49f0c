// virtio over PCI, modern interface only (virtio 1.2 section 4.1). One 64-bit memory BAR (BAR 0)
// holds every structure, each in its own 4 KiB page:
//
//   0x0000 common configuration (4.1.4.3)     0x3000 notifications, 4 bytes per queue (4.1.4.4)
//   0x1000 ISR status (4.1.4.5)               0x4000 MSI-X table, 0x5000 MSI-X PBA
//   0x2000 device-specific configuration
//
// notify_off_multiplier is 4 and queue_notify_off is the queue index, so every queue has its
// own notify address: the machine can give each one an ioeventfd (notifyAddresses()).
import type { GuestMemory } from '../../memory/guest-memory.js';
import { PciConfigSpace } from '../../pci/config-space.js';
import { silentLog, type GuestLog } from '../../pci/guest-log.js';
import { MsixTable } from '../../pci/msix.js';
import type { PciDevice } from '../../pci/pci-device.js';
import type { VirtioDeviceModel } from '../device.js';
import { TransportStateError, VirtioTransportCore, type TransportCoreState, type TransportSignals } from './transport-core.js';

/** JSON-safe snapshot of a virtio-pci function (DESIGN rule 7). */
export interface VirtioPciState {
  readonly core: TransportCoreState;
  /** The conventional 256 bytes of config space, base64. */
  readonly config: string;
  readonly msix: { readonly table: string; readonly pba: string };
  readonly configVector: number;
  readonly queueVectors: readonly number[];
  readonly isr: number;
}

const CONVENTIONAL_CONFIG = 256;

export const VIRTIO_PCI_VENDOR_ID = 0x1af4;
export const VIRTIO_PCI_DEVICE_ID_BASE = 0x1040;
export const VIRTIO_MSI_NO_VECTOR = 0xffff;

/** Where interrupts go: MSI messages (the machine routes them) and the INTx line level. */
export interface InterruptSink {
  msi(address: bigint, data: number): void;
  intx(level: boolean): void;
}

export const VIRTIO_PCI_BAR = 0;
export const COMMON_CFG_OFFSET = 0x0000;
export const ISR_OFFSET = 0x1000;
export const DEVICE_CFG_OFFSET = 0x2000;
export const NOTIFY_OFFSET = 0x3000;
export const MSIX_TABLE_OFFSET = 0x4000;
export const MSIX_PBA_OFFSET = 0x5000;
export const VIRTIO_PCI_BAR_SIZE = 0x8000;
export const NOTIFY_OFF_MULTIPLIER = 4;
const PAGE = 0x1000;
/** The notify page holds 1024 queues of 4 bytes; the MSI-X page 256 vectors of 16 bytes. */
export const VIRTIO_PCI_MAX_QUEUES = PAGE / NOTIFY_OFF_MULTIPLIER;
const MAX_VECTORS = PAGE / 16;
/** struct virtio_pci_common_cfg without the optional queue_notify_data/queue_reset fields. */
const COMMON_CFG_LENGTH = 0x38;

/** cfg_type values of virtio_pci_cap (4.1.4). */
const enum CapType {
  Common = 1,
  Notify = 2,
  Isr = 3,
  Device = 4,
  PciCfg = 5,
}
const PCI_CAP_ID_VENDOR = 0x09;

/** Common configuration field offsets (4.1.4.3). */
const enum Common {
  DeviceFeatureSelect = 0x00,
  DeviceFeature = 0x04,
  DriverFeatureSelect = 0x08,
  DriverFeature = 0x0c,
  ConfigMsixVector = 0x10,
  NumQueues = 0x12,
  DeviceStatus = 0x14,
  ConfigGeneration = 0x15,
  QueueSelect = 0x16,
  QueueSize = 0x18,
  QueueMsixVector = 0x1a,
  QueueEnable = 0x1c,
  QueueNotifyOff = 0x1e,
  QueueDesc = 0x20,
  QueueDriver = 0x28,
  QueueDevice = 0x30,
}

export interface VirtioPciOptions {
  readonly memory: GuestMemory;
  readonly interrupts: InterruptSink;
  readonly log?: GuestLog;
  readonly subsystemVendorId?: number;
  readonly subsystemId?: number;
}

/** PCI class codes Linux shows in lspci (the virtio driver ignores them). */
function classCodeFor(deviceType: number): number {
  switch (deviceType) {
    case 1: return 0x02_00_00; // network controller
    case 2: return 0x01_80_00; // mass storage, other
    case 3: return 0x07_80_00; // communication, other
    default: return 0xff_00_00; // unassigned
  }
}

export class VirtioPciDevice implements PciDevice {
  readonly config: PciConfigSpace;
  readonly transport: VirtioTransportCore;
  readonly msix: MsixTable;
  private readonly interrupts: InterruptSink;
  private readonly log: GuestLog;
  private readonly queueVectors: Uint16Array;
  private configVector = VIRTIO_MSI_NO_VECTOR;
  private isr = 0;
  private intxLevel = false;
  private barBase: number | undefined;
  private readonly pciCfgCap: number;
  private readonly scratch = new Uint8Array(8);
  private readonly scratchView = new DataView(this.scratch.buffer);

  constructor(readonly device: VirtioDeviceModel, options: VirtioPciOptions) {
    const queueCount = device.queueMaxSizes.length;
    if (queueCount > VIRTIO_PCI_MAX_QUEUES) throw new RangeError(`virtio-pci supports at most ${VIRTIO_PCI_MAX_QUEUES} queues, device has ${queueCount}`);
    if (device.configSize > PAGE) throw new RangeError(`device config space of ${device.configSize} bytes exceeds ${PAGE}`);
    this.interrupts = options.interrupts;
    this.log = options.log ?? silentLog;
    this.queueVectors = new Uint16Array(queueCount).fill(VIRTIO_MSI_NO_VECTOR);
    this.config = new PciConfigSpace({
      vendorId: VIRTIO_PCI_VENDOR_ID,
      deviceId: VIRTIO_PCI_DEVICE_ID_BASE + device.deviceType,
      classCode: classCodeFor(device.deviceType),
      revision: 1, // 4.1.2.1: modern-only devices have revision ID 1 or higher
      subsystemVendorId: options.subsystemVendorId ?? VIRTIO_PCI_VENDOR_ID,
      subsystemId: options.subsystemId ?? 0x1100,
      interruptPin: 1,
    });
    this.config.addBar(VIRTIO_PCI_BAR, { size: VIRTIO_PCI_BAR_SIZE, is64Bit: true, prefetchable: false });
    const signals: TransportSignals = {
      queueInterrupt: (q) => this.queueInterrupt(q),
      configInterrupt: () => this.configInterrupt(),
      resetInterrupts: () => this.resetInterrupts(),
    };
    this.transport = new VirtioTransportCore(device, options.memory, signals, this.log);
    this.addVirtioCap(CapType.Common, COMMON_CFG_OFFSET, COMMON_CFG_LENGTH);
    const notifyCap = this.addVirtioCap(CapType.Notify, NOTIFY_OFFSET, Math.max(1, queueCount) * NOTIFY_OFF_MULTIPLIER, 4);
    this.config.view.setUint32(notifyCap + 16, NOTIFY_OFF_MULTIPLIER, true);
    this.addVirtioCap(CapType.Isr, ISR_OFFSET, 1);
    if (device.configSize > 0) this.addVirtioCap(CapType.Device, DEVICE_CFG_OFFSET, device.configSize);
    this.pciCfgCap = this.addVirtioCap(CapType.PciCfg, 0, 0, 4, {
      beforeRead: (offset, length) => this.pciCfgAccess(offset, length, false),
      afterWrite: (offset, length) => this.pciCfgAccess(offset, length, true),
    });
    // 4.1.4.7: bar, offset, length and data of the PCI_CFG capability are driver-writable.
    this.config.setWriteMask(this.pciCfgCap + 4, 1, 0xff);
    this.config.setWriteMask(this.pciCfgCap + 8, 4, 0xffff_ffff);
    this.config.setWriteMask(this.pciCfgCap + 12, 4, 0xffff_ffff);
    this.config.setWriteMask(this.pciCfgCap + 16, 4, 0xffff_ffff);
    const vectors = Math.min(queueCount + 1, MAX_VECTORS);
    this.msix = new MsixTable(vectors, this.config, VIRTIO_PCI_BAR, MSIX_TABLE_OFFSET, MSIX_PBA_OFFSET, (address, data) => this.interrupts.msi(address, data));
  }

  state(): VirtioPciState {
    return {
      core: this.transport.state(),
      config: Buffer.from(this.config.bytes.subarray(0, CONVENTIONAL_CONFIG)).toString('base64'),
      msix: this.msix.state(),
      configVector: this.configVector,
      queueVectors: [...this.queueVectors],
      isr: this.isr,
    };
  }

  /**
   * Loads a snapshot into this freshly built function (same device type). Plug it in with
   * `segment.addDevice(pci, { slot, preserveBars: true })` afterwards so the BARs stay where the
   * guest put them. Interrupts that were pending are raised again.
   */
  restore(state: VirtioPciState): void {
    const bytes = Buffer.from(String(state.config), 'base64');
    if (bytes.length !== CONVENTIONAL_CONFIG) throw new TransportStateError(`config space of ${bytes.length} bytes`);
    // Identity and layout are the device's, not the snapshot's: they must agree.
    const same = (from: number, to: number): boolean => bytes.subarray(from, to).equals(Buffer.from(this.config.bytes.subarray(from, to)));
    if (!same(0x00, 0x04) || !same(0x08, 0x0c) || !same(0x2c, 0x30) || !same(0x34, 0x35)) throw new TransportStateError('config space belongs to another device');
    const vectors = state.queueVectors;
    if (!Array.isArray(vectors) || vectors.length !== this.queueVectors.length) throw new TransportStateError('queue vector count');
    const vector = (v: unknown): number => (typeof v === 'number' && Number.isInteger(v) && (v === VIRTIO_MSI_NO_VECTOR || (v >= 0 && v < this.msix.vectorCount)) ? v : VIRTIO_MSI_NO_VECTOR);
    // Everything is checked before anything changes: a refused snapshot leaves no trace.
    this.transport.checkState(state.core);
    if (Buffer.from(String(state.msix?.table), 'base64').length !== this.msix.table.length ||
      Buffer.from(String(state.msix?.pba), 'base64').length !== this.msix.pba.length) {
      throw new TransportStateError('MSI-X table size');
    }
    this.config.bytes.set(bytes);
    try {
      this.msix.restore(state.msix, this.config);
    } catch (error: unknown) {
      throw new TransportStateError(error instanceof Error ? error.message : String(error));
    }
    this.transport.restore(state.core, () => {
      this.configVector = vector(state.configVector);
      vectors.forEach((v, i) => { this.queueVectors[i] = vector(v); });
      this.isr = typeof state.isr === 'number' ? state.isr & 3 : 0;
      this.updateIntx();
    });
  }

  /** A virtio_pci_cap (16 bytes + `extra`); returns its config-space offset. */
  private addVirtioCap(type: CapType, offset: number, length: number, extra = 0, hooks?: Parameters<PciConfigSpace['addCapability']>[2]): number {
    const capLength = 16 + extra;
    const at = this.config.addCapability(PCI_CAP_ID_VENDOR, capLength, hooks);
    const v = this.config.view;
    v.setUint8(at + 2, capLength);
    v.setUint8(at + 3, type);
    v.setUint8(at + 4, VIRTIO_PCI_BAR);
    v.setUint8(at + 5, 0);
    v.setUint32(at + 8, offset, true);
    v.setUint32(at + 12, length, true);
    return at;
  }

  /** Guest physical address of each queue's notify register, or [] while BAR 0 is not decoded. */
  notifyAddresses(): number[] {
    const base = this.barBase;
    if (base === undefined) return [];
    return this.device.queueMaxSizes.map((_, q) => base + NOTIFY_OFFSET + q * NOTIFY_OFF_MULTIPLIER);
  }

  /** A notification that did not come through the BAR (an ioeventfd the machine registered). */
  queueNotified(queueIndex: number): void {
    this.transport.queueNotified(queueIndex);
  }

  /** MSI-X enable and the Command register's INTx-disable bit both gate the INTx level. */
  configWritten(): void {
    this.updateIntx();
  }

  barMoved(bar: number, address: number | undefined): void {
    if (bar === VIRTIO_PCI_BAR) this.barBase = address;
  }

  barRead(bar: number, offset: number, data: Uint8Array): void {
    if (bar !== VIRTIO_PCI_BAR || !isNaturalAccess(offset, data.length, VIRTIO_PCI_BAR_SIZE)) {
      this.transport.guestError(`BAR ${bar} read of ${data.length} bytes at 0x${offset.toString(16)} dropped`);
      data.fill(0xff);
      return;
    }
    const page = offset & ~(PAGE - 1);
    const within = offset - page;
    switch (page) {
      case COMMON_CFG_OFFSET:
        this.commonRead(within, data);
        return;
      case ISR_OFFSET:
        data.fill(0);
        if (within === 0) {
          // 4.1.4.5.1: reading ISR status resets it to 0 and deasserts INTx.
          data[0] = this.isr;
          this.isr = 0;
          this.updateIntx();
        }
        return;
      case DEVICE_CFG_OFFSET:
        this.transport.readConfig(within, data);
        return;
      case NOTIFY_OFFSET:
        data.fill(0);
        return;
      case MSIX_TABLE_OFFSET:
        this.msix.readTable(within, data);
        return;
      case MSIX_PBA_OFFSET:
        this.msix.readPba(within, data);
        return;
      default:
        data.fill(0);
    }
  }

  barWrite(bar: number, offset: number, data: Uint8Array): void {
    if (bar !== VIRTIO_PCI_BAR || !isNaturalAccess(offset, data.length, VIRTIO_PCI_BAR_SIZE)) {
      this.transport.guestError(`BAR ${bar} write of ${data.length} bytes at 0x${offset.toString(16)} dropped`);
      return;
    }
    const page = offset & ~(PAGE - 1);
    const within = offset - page;
    switch (page) {
      case COMMON_CFG_OFFSET:
        this.commonWrite(within, data);
        return;
      case DEVICE_CFG_OFFSET:
        this.transport.writeConfig(within, data);
        return;
      case NOTIFY_OFFSET: {
        // 4.1.4.4: the queue is identified by the address; the value written is the queue
        // index (without NOTIFICATION_DATA) and carries nothing more.
        if (within % NOTIFY_OFF_MULTIPLIER !== 0) {
          this.transport.guestError(`notify write at unaligned offset 0x${within.toString(16)}`);
          return;
        }
        this.transport.queueNotified(within / NOTIFY_OFF_MULTIPLIER);
        return;
      }
      case MSIX_TABLE_OFFSET:
        if (!this.msix.writeTable(within, data)) this.transport.guestError(`MSI-X table write of ${data.length} bytes at 0x${within.toString(16)} dropped`);
        return;
      default:
        this.transport.guestError(`write to read-only BAR offset 0x${offset.toString(16)}`);
    }
  }

  private loadScratch(data: Uint8Array): number {
    this.scratch.fill(0);
    this.scratch.set(data);
    return this.scratchView.getUint32(0, true);
  }

  private commonRead(offset: number, data: Uint8Array): void {
    const t = this.transport;
    const q = t.selectedQueue();
    const size = data.length;
    let value: number;
    const field = offset * 16 + size;
    switch (field) {
      case Common.DeviceFeatureSelect * 16 + 4: value = t.deviceFeatureSelect; break;
      case Common.DeviceFeature * 16 + 4: value = t.deviceFeatureWord(); break;
      case Common.DriverFeatureSelect * 16 + 4: value = t.driverFeatureSelect; break;
      case Common.DriverFeature * 16 + 4: value = t.driverFeatureWord(); break;
      case Common.ConfigMsixVector * 16 + 2: value = this.configVector; break;
      case Common.NumQueues * 16 + 2: value = t.queues.length; break;
      case Common.DeviceStatus * 16 + 1: value = t.status; break;
      case Common.ConfigGeneration * 16 + 1: value = t.configGeneration; break;
      case Common.QueueSelect * 16 + 2: value = t.queueSelect; break;
      case Common.QueueSize * 16 + 2: value = q?.size ?? 0; break;
      case Common.QueueMsixVector * 16 + 2: value = q === undefined ? VIRTIO_MSI_NO_VECTOR : this.queueVectors[t.queueSelect]!; break;
      case Common.QueueEnable * 16 + 2: value = q?.ready === true ? 1 : 0; break;
      case Common.QueueNotifyOff * 16 + 2: value = q === undefined ? 0 : t.queueSelect; break;
      case Common.QueueDesc * 16 + 4: case Common.QueueDriver * 16 + 4: case Common.QueueDevice * 16 + 4: value = q === undefined ? 0 : queueAddress(q, offset) % 2 ** 32; break;
      case (Common.QueueDesc + 4) * 16 + 4: case (Common.QueueDriver + 4) * 16 + 4: case (Common.QueueDevice + 4) * 16 + 4: value = q === undefined ? 0 : Math.floor(queueAddress(q, offset - 4) / 2 ** 32); break;
      case Common.QueueDesc * 16 + 8: case Common.QueueDriver * 16 + 8: case Common.QueueDevice * 16 + 8: {
        const address = q === undefined ? 0 : queueAddress(q, offset);
        new DataView(data.buffer, data.byteOffset, 8).setBigUint64(0, BigInt(address), true);
        return;
      }
      default:
        data.fill(0);
        if (offset >= COMMON_CFG_LENGTH) return; // reserved space reads as zero
        t.guestError(`common config read of ${size} bytes at 0x${offset.toString(16)} is not a field`);
        return;
    }
    writeLE(data, value);
  }

  private commonWrite(offset: number, data: Uint8Array): void {
    const t = this.transport;
    const size = data.length;
    const field = offset * 16 + size;
    if (size === 8) {
      if (field === Common.QueueDesc * 16 + 8 || field === Common.QueueDriver * 16 + 8 || field === Common.QueueDevice * 16 + 8) {
        const view = new DataView(data.buffer, data.byteOffset, 8);
        const name = addressField(offset);
        t.writeQueueAddress(name, false, view.getUint32(0, true));
        t.writeQueueAddress(name, true, view.getUint32(4, true));
      } else {
        t.guestError(`common config write of 8 bytes at 0x${offset.toString(16)} is not a field`);
      }
      return;
    }
    const value = this.loadScratch(data);
    switch (field) {
      case Common.DeviceFeatureSelect * 16 + 4: t.deviceFeatureSelect = value >>> 0; return;
      case Common.DriverFeatureSelect * 16 + 4: t.driverFeatureSelect = value >>> 0; return;
      case Common.DriverFeature * 16 + 4: t.writeDriverFeatureWord(value); return;
      case Common.ConfigMsixVector * 16 + 2: this.configVector = this.acceptVector(value); return;
      case Common.DeviceStatus * 16 + 1: t.writeStatus(value); return;
      case Common.QueueSelect * 16 + 2: t.queueSelect = value; return;
      case Common.QueueSize * 16 + 2: t.writeQueueSize(value); return;
      case Common.QueueMsixVector * 16 + 2: {
        if (t.selectedQueue() === undefined) {
          t.guestError(`queue_msix_vector: queue ${t.queueSelect} does not exist`);
          return;
        }
        this.queueVectors[t.queueSelect] = this.acceptVector(value);
        return;
      }
      case Common.QueueEnable * 16 + 2:
        // 4.1.4.3.2: the driver MUST NOT write 0 to queue_enable.
        if (value !== 1) t.guestError(`queue_enable written with ${value}; only 1 is valid`);
        else t.writeQueueReady(true);
        return;
      case Common.QueueDesc * 16 + 4: case Common.QueueDriver * 16 + 4: case Common.QueueDevice * 16 + 4: t.writeQueueAddress(addressField(offset), false, value); return;
      case (Common.QueueDesc + 4) * 16 + 4: case (Common.QueueDriver + 4) * 16 + 4: case (Common.QueueDevice + 4) * 16 + 4: t.writeQueueAddress(addressField(offset - 4), true, value); return;
      default:
        t.guestError(`common config write of ${size} bytes at 0x${offset.toString(16)} is not a writable field`);
    }
  }

  /** 4.1.5.1.2: a vector the device cannot use reads back as NO_VECTOR. */
  private acceptVector(value: number): number {
    if (value === VIRTIO_MSI_NO_VECTOR || value < this.msix.vectorCount) return value;
    this.transport.guestError(`MSI-X vector ${value} out of range (${this.msix.vectorCount} vectors)`);
    return VIRTIO_MSI_NO_VECTOR;
  }

  private queueInterrupt(queueIndex: number): void {
    if (this.msix.enabled) {
      const vector = this.queueVectors[queueIndex] ?? VIRTIO_MSI_NO_VECTOR;
      if (vector !== VIRTIO_MSI_NO_VECTOR) this.msix.signal(vector);
      return;
    }
    this.isr |= 1;
    this.updateIntx();
  }

  private configInterrupt(): void {
    // 4.1.4.5.1: the config bit is set in ISR status before any config notification.
    this.isr |= 2;
    if (this.msix.enabled) {
      if (this.configVector !== VIRTIO_MSI_NO_VECTOR) this.msix.signal(this.configVector);
      return;
    }
    this.updateIntx();
  }

  private resetInterrupts(): void {
    this.isr = 0;
    this.configVector = VIRTIO_MSI_NO_VECTOR;
    this.queueVectors.fill(VIRTIO_MSI_NO_VECTOR);
    this.updateIntx();
  }

  private updateIntx(): void {
    const level = this.isr !== 0 && !this.msix.enabled && !this.config.intxDisabled;
    if (level === this.intxLevel) return;
    this.intxLevel = level;
    this.interrupts.intx(level);
  }

  /** virtio 1.2 4.1.4.7: the PCI configuration access capability, a window onto the BAR. */
  private pciCfgAccess(offset: number, length: number, isWrite: boolean): void {
    const dataStart = this.pciCfgCap + 16;
    if (offset + length <= dataStart || offset >= dataStart + 4) return; // not the data field
    const v = this.config.view;
    const bar = v.getUint8(this.pciCfgCap + 4);
    const barOffset = v.getUint32(this.pciCfgCap + 8, true);
    const accessLength = v.getUint32(this.pciCfgCap + 12, true);
    if (bar !== VIRTIO_PCI_BAR || (accessLength !== 1 && accessLength !== 2 && accessLength !== 4) || barOffset % accessLength !== 0) {
      this.transport.guestError(`PCI_CFG access to BAR ${bar} offset 0x${barOffset.toString(16)} length ${accessLength} dropped`);
      return;
    }
    const window = this.config.bytes.subarray(dataStart, dataStart + accessLength);
    if (isWrite) this.barWrite(bar, barOffset, window.slice());
    else this.barRead(bar, barOffset, window);
  }
}

function isNaturalAccess(offset: number, length: number, size: number): boolean {
  return (length === 1 || length === 2 || length === 4 || length === 8) && Number.isInteger(offset) && offset >= 0 &&
    offset % length === 0 && offset + length <= size;
}

function addressField(offset: number): 'desc' | 'driver' | 'device' {
  return offset === Common.QueueDesc ? 'desc' : offset === Common.QueueDriver ? 'driver' : 'device';
}

function queueAddress(q: { desc: number; driver: number; device: number }, offset: number): number {
  return q[addressField(offset)];
}

function writeLE(data: Uint8Array, value: number): void {
  for (let i = 0; i < data.length; i++) data[i] = i < 4 ? (value >>> (8 * i)) & 0xff : 0;
}
