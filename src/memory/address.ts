// Guest physical addresses are a branded number so they are never mixed up with offsets or
// host addresses. A double holds every address below 2^53, far above any guest RAM here.
export type GuestAddress = number & { readonly __brand: 'GuestAddress' };

export function guestAddress(value: number): GuestAddress {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`not a guest address: ${value}`);
  return value as GuestAddress;
}

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
