// A type-0 PCI configuration space (PCI Local Bus 3.0 section 6.1; PCIe 4.0 section 7.5):
// 4 KiB of bytes with a write mask, write-1-to-clear bits, BAR sizing through the mask, a
// capability list and hooks for capabilities whose bytes are live (MSI-X control, virtio's
// PCI_CFG access window). Every access is bounds-checked: the guest picks offset and size.

/** Standard header offsets (type 0). */
export const enum PciHeader {
  VendorId = 0x00,
  DeviceId = 0x02,
  Command = 0x04,
  Status = 0x06,
  Revision = 0x08,
  ClassCode = 0x09,
  CacheLineSize = 0x0c,
  LatencyTimer = 0x0d,
  HeaderType = 0x0e,
  Bar0 = 0x10,
  SubsystemVendorId = 0x2c,
  SubsystemId = 0x2e,
  CapabilitiesPointer = 0x34,
  InterruptLine = 0x3c,
  InterruptPin = 0x3d,
}

export const PCI_COMMAND_MEMORY = 0x0002;
export const PCI_COMMAND_BUS_MASTER = 0x0004;
export const PCI_COMMAND_INTX_DISABLE = 0x0400;
const PCI_STATUS_CAP_LIST = 0x0010;
/** Status bits that are write-1-to-clear (parity/abort errors). */
const PCI_STATUS_W1C = 0xf900;

export const CONFIG_SPACE_SIZE = 4096;
/** Conventional config space; capabilities live here (extended capabilities are not used). */
const CONVENTIONAL_SIZE = 256;
export const BAR_COUNT = 6;

export interface BarSpec {
  /** A power of two, at least 16 bytes (PCI 3.0 section 6.2.5.1); novm uses at least 4 KiB. */
  readonly size: number;
  readonly is64Bit: boolean;
  readonly prefetchable: boolean;
}

export interface PciIds {
  readonly vendorId: number;
  readonly deviceId: number;
  /** class << 16 | subclass << 8 | programming interface. */
  readonly classCode: number;
  readonly revision: number;
  readonly subsystemVendorId: number;
  readonly subsystemId: number;
  /** 0 none, 1 INTA# ... 4 INTD#. */
  readonly interruptPin: number;
}

/** Live capability bytes: called before a read / after a write that touches [start, end). */
export interface CapabilityHooks {
  beforeRead?(offset: number, length: number): void;
  afterWrite?(offset: number, length: number): void;
}

interface HookRange {
  readonly start: number;
  readonly end: number;
  readonly hooks: CapabilityHooks;
}

export class PciConfigError extends Error {
  readonly kind = 'pci-config' as const;
  constructor(message: string) {
    super(message);
    this.name = 'PciConfigError';
  }
}

export class PciConfigSpace {
  readonly bytes = new Uint8Array(CONFIG_SPACE_SIZE);
  readonly view = new DataView(this.bytes.buffer);
  private readonly writeMask = new Uint8Array(CONFIG_SPACE_SIZE);
  private readonly clearMask = new Uint8Array(CONFIG_SPACE_SIZE);
  private readonly barSpecs: Array<BarSpec | undefined> = new Array<BarSpec | undefined>(BAR_COUNT).fill(undefined);
  private readonly hooks: HookRange[] = [];
  private lastCapability = 0;
  private nextCapability = 0x40;

  constructor(ids: PciIds) {
    const v = this.view;
    v.setUint16(PciHeader.VendorId, ids.vendorId, true);
    v.setUint16(PciHeader.DeviceId, ids.deviceId, true);
    v.setUint8(PciHeader.Revision, ids.revision);
    v.setUint8(PciHeader.ClassCode, ids.classCode & 0xff);
    v.setUint16(PciHeader.ClassCode + 1, (ids.classCode >>> 8) & 0xffff, true);
    v.setUint8(PciHeader.HeaderType, 0);
    v.setUint16(PciHeader.SubsystemVendorId, ids.subsystemVendorId, true);
    v.setUint16(PciHeader.SubsystemId, ids.subsystemId, true);
    v.setUint8(PciHeader.InterruptPin, ids.interruptPin);
    this.setWriteMask(PciHeader.Command, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_BUS_MASTER | PCI_COMMAND_INTX_DISABLE);
    this.clearMask[PciHeader.Status] = PCI_STATUS_W1C & 0xff;
    this.clearMask[PciHeader.Status + 1] = PCI_STATUS_W1C >>> 8;
    this.setWriteMask(PciHeader.CacheLineSize, 1, 0xff);
    this.setWriteMask(PciHeader.LatencyTimer, 1, 0xff);
    this.setWriteMask(PciHeader.InterruptLine, 1, 0xff);
  }

  /** Makes `length` bytes (1, 2 or 4) at `offset` writable through `mask`. */
  setWriteMask(offset: number, length: number, mask: number): void {
    for (let i = 0; i < length; i++) this.writeMask[offset + i] = (mask >>> (8 * i)) & 0xff;
  }

  get command(): number {
    return this.view.getUint16(PciHeader.Command, true);
  }

  get memorySpaceEnabled(): boolean {
    return (this.command & PCI_COMMAND_MEMORY) !== 0;
  }

  get intxDisabled(): boolean {
    return (this.command & PCI_COMMAND_INTX_DISABLE) !== 0;
  }

  /** Declares a memory BAR. A 64-bit BAR also takes register index + 1. */
  addBar(index: number, spec: BarSpec): void {
    const last = spec.is64Bit ? index + 1 : index;
    if (!Number.isInteger(index) || index < 0 || last >= BAR_COUNT) throw new PciConfigError(`BAR ${index} does not exist`);
    if (this.barSpecs[index] !== undefined || (spec.is64Bit && this.barSpecs[index + 1] !== undefined)) throw new PciConfigError(`BAR ${index} is taken`);
    if (!Number.isSafeInteger(spec.size) || spec.size < 16 || !Number.isInteger(Math.log2(spec.size))) {
      throw new PciConfigError(`BAR size ${spec.size} is not a power of two >= 16`);
    }
    if (spec.size > 2 ** 31 && !spec.is64Bit) throw new PciConfigError('a 32-bit BAR cannot exceed 2 GiB');
    this.barSpecs[index] = spec;
    const flags = (spec.is64Bit ? 0b100 : 0) | (spec.prefetchable ? 0b1000 : 0);
    const offset = PciHeader.Bar0 + 4 * index;
    this.view.setUint32(offset, flags, true);
    // Sizing (PCI 3.0 section 6.2.5.1): the address bits below the size read back as zero, so
    // writing all-ones and reading back yields the size mask with no special case.
    const lowMask = Number(BigInt.asUintN(32, ~(BigInt(spec.size) - 1n))) & 0xffff_fff0;
    this.setWriteMask(offset, 4, lowMask);
    if (spec.is64Bit) {
      const highMask = Number(BigInt.asUintN(32, ~((BigInt(spec.size) - 1n) >> 32n)));
      this.setWriteMask(offset + 4, 4, highMask);
    }
  }

  barSpec(index: number): BarSpec | undefined {
    return this.barSpecs[index];
  }

  /** The address programmed in BAR `index` (whether or not memory decoding is on). */
  barAddress(index: number): number {
    const spec = this.barSpecs[index];
    if (spec === undefined) return 0;
    const offset = PciHeader.Bar0 + 4 * index;
    const low = (this.view.getUint32(offset, true) & 0xffff_fff0) >>> 0;
    const high = spec.is64Bit ? this.view.getUint32(offset + 4, true) : 0;
    return high * 2 ** 32 + low;
  }

  /** Programs a BAR address as firmware would (host side; no write mask). */
  setBarAddress(index: number, address: number): void {
    const spec = this.barSpecs[index];
    if (spec === undefined) throw new PciConfigError(`BAR ${index} is not declared`);
    if (address % spec.size !== 0) throw new PciConfigError(`BAR ${index} address 0x${address.toString(16)} is not aligned to its size`);
    const offset = PciHeader.Bar0 + 4 * index;
    const flags = this.view.getUint32(offset, true) & 0xf;
    this.view.setUint32(offset, ((address % 2 ** 32) | flags) >>> 0, true);
    if (spec.is64Bit) this.view.setUint32(offset + 4, Math.floor(address / 2 ** 32), true);
  }

  /**
   * Appends a capability of `length` bytes (including its 2-byte header) to the list and
   * returns its offset. The body starts zeroed and read-only; use setWriteMask for the
   * writable fields and `hooks` for live ones.
   */
  addCapability(id: number, length: number, hooks?: CapabilityHooks): number {
    const offset = this.nextCapability;
    const size = (length + 3) & ~3;
    if (length < 2 || offset + size > CONVENTIONAL_SIZE) throw new PciConfigError(`no room for a ${length}-byte capability`);
    this.bytes[offset] = id;
    this.bytes[offset + 1] = 0;
    if (this.lastCapability === 0) this.bytes[PciHeader.CapabilitiesPointer] = offset;
    else this.bytes[this.lastCapability + 1] = offset;
    this.lastCapability = offset;
    this.nextCapability = offset + size;
    this.view.setUint16(PciHeader.Status, this.view.getUint16(PciHeader.Status, true) | PCI_STATUS_CAP_LIST, true);
    if (hooks !== undefined) this.hooks.push({ start: offset, end: offset + length, hooks });
    return offset;
  }

  /** Guest read. Out-of-range or misaligned accesses read all-ones. */
  read(offset: number, data: Uint8Array): void {
    const length = data.length;
    if (!isAligned(offset, length)) {
      data.fill(0xff);
      return;
    }
    for (const range of this.hooks) {
      if (offset < range.end && offset + length > range.start) range.hooks.beforeRead?.(offset, length);
    }
    data.set(this.bytes.subarray(offset, offset + length));
  }

  /** Guest write through the write mask. Returns false if the access was dropped. */
  write(offset: number, data: Uint8Array): boolean {
    const length = data.length;
    if (!isAligned(offset, length)) return false;
    for (let i = 0; i < length; i++) {
      const at = offset + i;
      const value = data[i]!;
      const mask = this.writeMask[at]!;
      let next = (this.bytes[at]! & ~mask) | (value & mask);
      next &= ~(value & this.clearMask[at]!);
      this.bytes[at] = next;
    }
    for (const range of this.hooks) {
      if (offset < range.end && offset + length > range.start) range.hooks.afterWrite?.(offset, length);
    }
    return true;
  }
}

/** Config accesses are 1, 2 or 4 bytes, naturally aligned, inside the 4 KiB space. */
function isAligned(offset: number, length: number): boolean {
  return (length === 1 || length === 2 || length === 4) && Number.isInteger(offset) && offset >= 0 &&
    offset + length <= CONFIG_SPACE_SIZE && offset % length === 0;
}
