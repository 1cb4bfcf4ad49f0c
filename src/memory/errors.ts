import type { GuestAddress } from './address.js';

/** A guest-supplied address range that is not backed by guest RAM. */
export class GuestMemoryError extends Error {
  readonly kind = 'guest-memory-out-of-range' as const;
  constructor(readonly address: number, readonly length: number) {
    super(`guest memory access out of range: 0x${address.toString(16)} + ${length}`);
    this.name = 'GuestMemoryError';
  }
}

export function outOfRange(address: GuestAddress | number, length: number): GuestMemoryError {
  return new GuestMemoryError(address, length);
}
