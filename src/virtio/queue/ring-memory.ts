// Guest-memory checks shared by the split and packed virtqueue layouts: ring areas must be aligned
// guest RAM, and 64-bit guest addresses beyond 2^53 (never RAM) are told apart from numbers.
import type { GuestMemory } from '../../memory/guest-memory.js';
import { QueueViolation } from './errors.js';

/** Throws a QueueViolation unless [address, address + length) is `align`-aligned guest RAM. */
export function checkArea(memory: GuestMemory, what: string, address: number, length: number, align: number): void {
  if (!Number.isSafeInteger(address) || address % align !== 0) {
    throw new QueueViolation('ring-misaligned', `${what} at ${hex(address)} is not ${align}-byte aligned`);
  }
  if (!memory.isValidRange(address, length)) {
    throw new QueueViolation('ring-out-of-memory', `${what} at ${hex(address)} + ${length} is not guest RAM`);
  }
}

/** A u64 guest address as a number, or undefined if it is beyond 2^53 (never RAM). */
export function readU64AsNumber(memory: GuestMemory, address: number): number | undefined {
  const low = memory.readU32LE(address);
  const high = memory.readU32LE(address + 4);
  if (high >= 0x20_0000) return undefined;
  return high * 0x1_0000_0000 + low;
}

/** A guest address for a log line; undefined stands for one beyond 2^53. */
export function hex(value: number | undefined): string {
  return value === undefined ? '>2^53' : `0x${value.toString(16)}`;
}
