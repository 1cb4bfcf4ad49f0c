// Address-range dispatch for PIO and MMIO exits. Lookups allocate nothing: ranges live in
// sorted parallel arrays and a one-entry cache catches the common repeat access.
import type { BusDevice } from './bus-device.js';

export class BusConflictError extends Error {
  readonly kind = 'bus-conflict' as const;
  constructor(readonly base: number, readonly size: number) {
    super(`bus range 0x${base.toString(16)}+0x${size.toString(16)} overlaps an existing device`);
    this.name = 'BusConflictError';
  }
}

export class Bus {
  private bases: number[] = [];
  private ends: number[] = [];
  private devices: BusDevice[] = [];
  private lastIndex = -1;
  /** Accesses that hit no device (a metric; the guest reads all-ones there). */
  unhandled = 0;

  insert(base: number, size: number, device: BusDevice): void {
    if (!Number.isSafeInteger(base) || !Number.isSafeInteger(size) || size <= 0) throw new RangeError(`bad bus range ${base}+${size}`);
    const end = base + size;
    let i = 0;
    while (i < this.bases.length && this.bases[i]! < base) i++;
    if ((i > 0 && this.ends[i - 1]! > base) || (i < this.bases.length && this.bases[i]! < end)) throw new BusConflictError(base, size);
    this.bases.splice(i, 0, base);
    this.ends.splice(i, 0, end);
    this.devices.splice(i, 0, device);
    this.lastIndex = -1;
  }

  remove(base: number): boolean {
    const i = this.bases.indexOf(base);
    if (i < 0) return false;
    this.bases.splice(i, 1);
    this.ends.splice(i, 1);
    this.devices.splice(i, 1);
    this.lastIndex = -1;
    return true;
  }

  private indexOf(address: number): number {
    const last = this.lastIndex;
    if (last >= 0 && address >= this.bases[last]! && address < this.ends[last]!) return last;
    let lo = 0;
    let hi = this.bases.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (address < this.bases[mid]!) hi = mid - 1;
      else if (address >= this.ends[mid]!) lo = mid + 1;
      else {
        this.lastIndex = mid;
        return mid;
      }
    }
    return -1;
  }

  /** True if a device claims `address`. */
  claims(address: number): boolean {
    return this.indexOf(address) >= 0;
  }

  /** Dispatches a read; returns false (and fills with 0xff) when no device claims it. */
  read(address: number, data: Uint8Array): boolean {
    const i = this.indexOf(address);
    if (i < 0) {
      data.fill(0xff);
      this.unhandled++;
      return false;
    }
    this.devices[i]!.read(address - this.bases[i]!, data);
    return true;
  }

  /** Dispatches a write; returns false when no device claims it (the write is dropped). */
  write(address: number, data: Uint8Array): boolean {
    const i = this.indexOf(address);
    if (i < 0) {
      this.unhandled++;
      return false;
    }
    this.devices[i]!.write(address - this.bases[i]!, data);
    return true;
  }
}
