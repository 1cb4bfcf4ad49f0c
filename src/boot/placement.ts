// Where boot data may go in guest RAM. Tracks the RAM ranges, the ranges the platform reserves
// (ACPI tables, MMIO windows) and what the loader has already placed, and hands out free,
// aligned ranges. Nothing is ever placed in the first page, so a zero pointer stays invalid.
import type { RamRange } from '../memory/layout.js';
import type { MemoryMapEntry } from './boot-plan.js';

export interface Interval {
  readonly start: number;
  readonly end: number; // exclusive
  readonly what: string;
}

export class PlacementError extends Error {
  readonly kind = 'placement' as const;
}

export interface AllocateOptions {
  readonly align: number;
  /** The range must end at or below this address (exclusive bound). */
  readonly below?: number;
  /** The range must start at or above this address. */
  readonly above?: number;
  /** Take the highest fitting range instead of the lowest. */
  readonly fromTop?: boolean;
}

const FIRST_USABLE = 0x1000;

export class GuestPlacement {
  private readonly ram: readonly Interval[];
  private readonly busy: Interval[] = [];

  constructor(ram: readonly RamRange[], reserved: readonly MemoryMapEntry[]) {
    this.ram = ram.map((r) => ({ start: r.start, end: r.start + r.size, what: 'RAM' })).sort((a, b) => a.start - b.start);
    for (const r of reserved) if (r.size > 0) this.busy.push({ start: r.address, end: r.address + r.size, what: `reserved (${r.type})` });
    this.busy.push({ start: 0, end: FIRST_USABLE, what: 'the first page' });
  }

  /** Marks [start, start+size) as used by `what`; it must be RAM and free. */
  claim(start: number, size: number, what: string): void {
    const end = start + size;
    if (!Number.isSafeInteger(start) || start < 0 || !Number.isSafeInteger(size) || size < 0) {
      throw new PlacementError(`${what}: invalid range at ${hex(start)}`);
    }
    if (size === 0) return;
    if (!this.ram.some((r) => r.start <= start && end <= r.end)) {
      throw new PlacementError(`${what} [${hex(start)}, ${hex(end)}) is not inside guest RAM (${this.describeRam()})`);
    }
    const clash = this.busy.find((b) => b.start < end && start < b.end);
    if (clash) throw new PlacementError(`${what} [${hex(start)}, ${hex(end)}) overlaps ${clash.what} [${hex(clash.start)}, ${hex(clash.end)})`);
    this.busy.push({ start, end, what });
  }

  /** Finds and claims a free range of `size` bytes; returns its start. */
  allocate(size: number, what: string, options: AllocateOptions): number {
    const address = this.find(size, options);
    if (address === undefined) {
      const limits = `${options.above !== undefined ? ` above ${hex(options.above)}` : ''}${options.below !== undefined ? ` below ${hex(options.below)}` : ''}`;
      throw new PlacementError(`no free guest RAM for ${what} (${size} bytes${limits}; RAM is ${this.describeRam()})`);
    }
    this.claim(address, size, what);
    return address;
  }

  private find(size: number, options: AllocateOptions): number | undefined {
    const size1 = Math.max(size, 1);
    const lo = options.above ?? 0;
    const hi = options.below ?? Number.MAX_SAFE_INTEGER;
    const gaps = this.freeGaps();
    if (options.fromTop) gaps.reverse();
    for (const gap of gaps) {
      const start = Math.max(gap.start, lo);
      const end = Math.min(gap.end, hi);
      if (options.fromTop) {
        const candidate = Math.floor((end - size1) / options.align) * options.align;
        if (candidate >= start && candidate + size1 <= end) return candidate;
      } else {
        const candidate = Math.ceil(start / options.align) * options.align;
        if (candidate + size1 <= end) return candidate;
      }
    }
    return undefined;
  }

  /** RAM minus everything busy, sorted by address. */
  freeGaps(): Interval[] {
    const busy = [...this.busy].sort((a, b) => a.start - b.start);
    const gaps: Interval[] = [];
    for (const r of this.ram) {
      let cursor = r.start;
      for (const b of busy) {
        if (b.end <= cursor || b.start >= r.end) continue;
        if (b.start > cursor) gaps.push({ start: cursor, end: b.start, what: 'free' });
        cursor = Math.max(cursor, b.end);
      }
      if (cursor < r.end) gaps.push({ start: cursor, end: r.end, what: 'free' });
    }
    return gaps;
  }

  /** Highest RAM address below 4 GiB (the end of low RAM), used as a bound for 32-bit pointers. */
  lowRamEnd(): number {
    let end = 0;
    for (const r of this.ram) if (r.start < 2 ** 32) end = Math.max(end, Math.min(r.end, 2 ** 32));
    return end;
  }

  private describeRam(): string {
    return this.ram.map((r) => `[${hex(r.start)}, ${hex(r.end)})`).join(' ');
  }
}

export function hex(value: number): string {
  return `0x${value.toString(16)}`;
}
