// PCI segment 0, bus 0: 32 device slots behind a host bridge, reached through ECAM (PCIe 4.0
// section 7.2.2, described to the guest by ACPI MCFG) and the legacy 0xCF8/0xCFC ports (PCI 3.0
// section 3.2.2.3.2; Linux uses them for bus 0's first 256 bytes when they exist). The segment
// plays firmware: it assigns every BAR an address in the MMIO window, and then decodes whatever
// the guest programs, as long as it stays inside the window and overlaps nothing.
import { Bus, BusConflictError } from '../bus/bus.js';
import type { BusDevice } from '../bus/bus-device.js';
import { PCI_MMIO_SIZE, PCI_MMIO_START } from '../memory/layout.js';
import { BAR_COUNT, PciHeader } from './config-space.js';
import { silentLog, type GuestLog } from './guest-log.js';
import { PciHostBridge } from './host-bridge.js';
import type { BarMapping, BarObserver, PciDevice } from './pci-device.js';

export const PCI_SLOT_COUNT = 32;
/** ECAM bytes for bus 0 (32 devices x 8 functions x 4 KiB). */
export const ECAM_BUS_SIZE = 1 << 20;
/** The legacy configuration mechanism's two registers (CONFIG_ADDRESS, CONFIG_DATA). */
export const PCI_CONFIG_IO_PORT = 0xcf8;
export const PCI_CONFIG_IO_SIZE = 8;

export class PciSegmentError extends Error {
  readonly kind = 'pci-segment' as const;
  constructor(message: string) {
    super(message);
    this.name = 'PciSegmentError';
  }
}

export interface PciSegmentOptions {
  readonly mmioStart?: number;
  readonly mmioSize?: number;
  readonly log?: GuestLog;
  /**
   * A byte write to 0xCF9 (the Reset Control Register chipsets put beside CONFIG_ADDRESS) with
   * the "reset CPU" bit 2 set: the guest asks for a reboot (Linux reboot=pci, or an ACPI FADT
   * RESET_REG pointing there).
   */
  readonly onResetRequest?: () => void;
}

/** 0xCF9 relative to PCI_CONFIG_IO_PORT, and its reset-CPU bit. */
const RESET_CONTROL_OFFSET = 1;
const RESET_CONTROL_RESET_CPU = 0x04;

export interface AddDeviceOptions {
  /** Slot number 1..31; the first free one by default. */
  readonly slot?: number;
  /** Value for the Interrupt Line register (the GSI the machine routes INTx to). */
  readonly interruptLine?: number;
  /** Keep the BAR addresses already in the device's config space (a restored snapshot). */
  readonly preserveBars?: boolean;
}

export class PciSegment {
  readonly mmioStart: number;
  readonly mmioSize: number;
  /** Register at PCI_ECAM_START with size ECAM_BUS_SIZE (bus 0 only; other buses read as absent). */
  readonly ecam: BusDevice;
  /** Register at mmioStart with size mmioSize: dispatches to the decoded BARs. */
  readonly mmio: BusDevice;
  /** Register on the PIO bus at PCI_CONFIG_IO_PORT, size PCI_CONFIG_IO_SIZE. */
  readonly configIo: BusDevice;
  readonly hostBridge = new PciHostBridge();
  private readonly slots: Array<PciDevice | undefined> = new Array<PciDevice | undefined>(PCI_SLOT_COUNT).fill(undefined);
  private readonly mapped: Array<Array<BarMapping | undefined>> = [];
  private readonly barBus = new Bus();
  private readonly observers: BarObserver[] = [];
  private readonly log: GuestLog;
  private nextFree: number;
  private configAddress = 0;
  private resetControl = 0;
  private readonly onResetRequest: (() => void) | undefined;

  constructor(options: PciSegmentOptions = {}) {
    this.mmioStart = options.mmioStart ?? PCI_MMIO_START;
    this.mmioSize = options.mmioSize ?? PCI_MMIO_SIZE;
    this.log = options.log ?? silentLog;
    this.onResetRequest = options.onResetRequest;
    this.nextFree = this.mmioStart;
    for (let i = 0; i < PCI_SLOT_COUNT; i++) this.mapped.push(new Array<BarMapping | undefined>(BAR_COUNT).fill(undefined));
    this.slots[0] = this.hostBridge;
    this.ecam = {
      read: (offset, data) => this.ecamAccess(offset, data, false),
      write: (offset, data) => this.ecamAccess(offset, data, true),
    };
    this.mmio = {
      read: (offset, data) => {
        this.barBus.read(this.mmioStart + offset, data);
      },
      write: (offset, data) => {
        this.barBus.write(this.mmioStart + offset, data);
      },
    };
    this.configIo = {
      read: (offset, data) => this.configIoRead(offset, data),
      write: (offset, data) => this.configIoWrite(offset, data),
    };
  }

  observe(observer: BarObserver): void {
    this.observers.push(observer);
  }

  /** Plugs a device in, assigns its BARs (decoding starts when the guest enables memory space). */
  addDevice(device: PciDevice, options: AddDeviceOptions = {}): number {
    const slot = options.slot ?? this.slots.findIndex((d) => d === undefined);
    if (!Number.isInteger(slot) || slot < 1 || slot >= PCI_SLOT_COUNT) throw new PciSegmentError(`no free PCI slot (asked for ${options.slot ?? 'any'})`);
    if (this.slots[slot] !== undefined) throw new PciSegmentError(`PCI slot ${slot} is taken`);
    const assignments: Array<[number, number]> = [];
    let cursor = this.nextFree;
    for (let bar = 0; bar < BAR_COUNT; bar++) {
      const spec = device.config.barSpec(bar);
      if (spec === undefined) continue;
      const address = Math.ceil(cursor / spec.size) * spec.size;
      if (address + spec.size > this.mmioStart + this.mmioSize) throw new PciSegmentError(`PCI MMIO window full: cannot place a ${spec.size}-byte BAR`);
      assignments.push([bar, address]);
      cursor = address + spec.size;
    }
    if (options.preserveBars !== true) {
      for (const [bar, address] of assignments) device.config.setBarAddress(bar, address);
    }
    this.nextFree = cursor;
    if (options.interruptLine !== undefined) device.config.bytes[PciHeader.InterruptLine] = options.interruptLine;
    this.slots[slot] = device;
    this.refresh(slot);
    return slot;
  }

  device(slot: number): PciDevice | undefined {
    return this.slots[slot];
  }

  /** Where BAR `bar` of the device in `slot` is decoded now, if it is. */
  mapping(slot: number, bar: number): BarMapping | undefined {
    return this.mapped[slot]?.[bar];
  }

  /** Host-side config access (bus 0): what both guest mechanisms end in. */
  configRead(slot: number, func: number, register: number, data: Uint8Array): void {
    const device = func === 0 ? this.slots[slot] : undefined;
    if (device === undefined) {
      data.fill(0xff);
      return;
    }
    device.config.read(register, data);
  }

  configWrite(slot: number, func: number, register: number, data: Uint8Array): void {
    const device = func === 0 ? this.slots[slot] : undefined;
    if (device === undefined) return;
    if (!device.config.write(register, data)) {
      this.log(`pci ${slot}: dropped config write of ${data.length} bytes at 0x${register.toString(16)}`);
      return;
    }
    device.configWritten?.(register, data.length);
    const end = register + data.length;
    const touchesCommand = register < PciHeader.Command + 2 && end > PciHeader.Command;
    const touchesBars = register < PciHeader.Bar0 + 4 * BAR_COUNT && end > PciHeader.Bar0;
    if (touchesCommand || touchesBars) this.refresh(slot);
  }

  private ecamAccess(offset: number, data: Uint8Array, isWrite: boolean): void {
    const bus = Math.floor(offset / ECAM_BUS_SIZE);
    const slot = (offset >>> 15) & 0x1f;
    const func = (offset >>> 12) & 0x7;
    const register = offset & 0xfff;
    if (bus !== 0) {
      if (!isWrite) data.fill(0xff);
      return;
    }
    if (isWrite) this.configWrite(slot, func, register, data);
    else this.configRead(slot, func, register, data);
  }

  private configIoRead(offset: number, data: Uint8Array): void {
    if (offset === RESET_CONTROL_OFFSET && data.length === 1) {
      data[0] = this.resetControl;
      return;
    }
    if (offset === 0 && data.length === 4) {
      new DataView(data.buffer, data.byteOffset, 4).setUint32(0, this.configAddress, true);
      return;
    }
    const target = this.configTarget(offset, data.length);
    if (target === undefined) {
      data.fill(0xff);
      return;
    }
    this.configRead(target.slot, target.func, target.register, data);
  }

  private configIoWrite(offset: number, data: Uint8Array): void {
    if (offset === RESET_CONTROL_OFFSET && data.length === 1) {
      this.resetControl = data[0]! & ~RESET_CONTROL_RESET_CPU;
      if ((data[0]! & RESET_CONTROL_RESET_CPU) !== 0) this.onResetRequest?.();
      return;
    }
    if (offset === 0 && data.length === 4) {
      // Bits 1:0 are reserved and read as zero; bits 30:24 are reserved (PCI 3.0 3.2.2.3.2).
      this.configAddress = new DataView(data.buffer, data.byteOffset, 4).getUint32(0, true) & 0x80ff_fffc;
      return;
    }
    const target = this.configTarget(offset, data.length);
    if (target !== undefined) this.configWrite(target.slot, target.func, target.register, data);
  }

  private configTarget(offset: number, length: number): { slot: number; func: number; register: number } | undefined {
    if (offset < 4 || offset + length > 8) return undefined;
    const address = this.configAddress;
    if ((address & 0x8000_0000) === 0 || ((address >>> 16) & 0xff) !== 0) return undefined;
    return { slot: (address >>> 11) & 0x1f, func: (address >>> 8) & 0x7, register: (address & 0xfc) + (offset - 4) };
  }

  /** Recomputes which of a device's BARs are decoded, after a command or BAR write. */
  private refresh(slot: number): void {
    const device = this.slots[slot];
    if (device === undefined) return;
    const config = device.config;
    for (let bar = 0; bar < BAR_COUNT; bar++) {
      const spec = config.barSpec(bar);
      if (spec === undefined) continue;
      const current = this.mapped[slot]![bar];
      const address = config.barAddress(bar);
      const wanted = config.memorySpaceEnabled && address >= this.mmioStart && address + spec.size <= this.mmioStart + this.mmioSize;
      if (current !== undefined && wanted && current.address === address) continue;
      if (current !== undefined) this.unmap(device, current);
      if (!wanted) continue;
      const mapping: BarMapping = { slot, bar, address, size: spec.size };
      try {
        this.barBus.insert(address, spec.size, {
          read: (offset, data) => device.barRead(bar, offset, data),
          write: (offset, data) => device.barWrite(bar, offset, data),
        });
      } catch (error: unknown) {
        if (!(error instanceof BusConflictError)) throw error;
        this.log(`pci ${slot}: BAR ${bar} at 0x${address.toString(16)} overlaps another BAR; not decoded`);
        continue;
      }
      this.mapped[slot]![bar] = mapping;
      device.barMoved?.(bar, address);
      for (const observer of this.observers) observer.barMapped(device, mapping);
    }
  }

  private unmap(device: PciDevice, mapping: BarMapping): void {
    this.barBus.remove(mapping.address);
    this.mapped[mapping.slot]![mapping.bar] = undefined;
    device.barMoved?.(mapping.bar, undefined);
    for (const observer of this.observers) observer.barUnmapped(device, mapping);
  }
}
