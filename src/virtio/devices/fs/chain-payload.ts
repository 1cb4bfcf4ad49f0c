// The data part of a virtio-fs READ or WRITE described as host iovecs into guest RAM, so that the
// FUSE engine can preadv/pwritev it in place instead of the device copying it (the shape is
// src/fs/data-payload.ts's DataPayload; see there for the contract). One per request slot,
// refilled for every request: nothing is allocated per request.
import type { GuestMemory } from '../../../memory/guest-memory.js';
import type { DescriptorChain } from '../../queue/descriptor-chain.js';

/** iovecs one preadv/pwritev accepts (Linux UIO_MAXIOV): a chain needing more is copied. */
export const IOV_MAX = 1024;

export class ChainPayload {
  /** struct iovec[IOV_MAX] as the system call reads it... */
  readonly iov: BigUint64Array;
  /** ...and the same bytes as u32 words, written with numbers (no bigint per segment). */
  private readonly words: Uint32Array;
  iovCount = 0;
  bytes = 0;

  /** `gatherRequest` copies the whole request as the device would without a payload. */
  constructor(private readonly gatherRequest: () => Uint8Array) {
    const raw = new ArrayBuffer(16 * IOV_MAX);
    this.iov = new BigUint64Array(raw);
    this.words = new Uint32Array(raw);
  }

  /** Describes bytes [offset, offset + length) of one side of the chain; false (and empty) when
   *  they are not all in host-mapped guest RAM or need more than IOV_MAX iovecs. */
  describe(chain: DescriptorChain, memory: GuestMemory, writable: boolean, offset: number, length: number): boolean {
    const count = chain.hostIovecs(memory, writable, offset, length, this.words, IOV_MAX);
    this.iovCount = count < 0 ? 0 : count;
    this.bytes = count < 0 ? 0 : length;
    return count >= 0;
  }

  limit(length: number): boolean {
    if (!(length >= 0) || length > this.bytes) return false;
    const words = this.words;
    let left = length;
    let count = 0;
    while (left > 0) {
      // Each iovec's length is below 2^32 (a chain carries < 2^32 bytes): its high word is 0.
      const n = words[4 * count + 2]!;
      if (n >= left) {
        words[4 * count + 2] = left;
        left = 0;
      } else {
        left -= n;
      }
      count++;
    }
    this.iovCount = count;
    this.bytes = length;
    return true;
  }

  gather(): Uint8Array {
    return this.gatherRequest();
  }
}
