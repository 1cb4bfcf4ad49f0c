// One descriptor chain popped from a virtqueue, flattened into segments. A device keeps one
// DescriptorChain per queue and refills it for every request: no allocation per request.
// Every segment was checked against guest memory when the chain was read (virtio 1.2 §2.7.5).
import type { GuestMemory } from '../../memory/guest-memory.js';

export class DescriptorChain {
  /** Descriptor index of the chain's head: what goes back in the used ring. */
  head = 0;
  /** Number of segments; [0, writableStart) are device-readable, the rest device-writable. */
  count = 0;
  writableStart = 0;
  readableBytes = 0;
  writableBytes = 0;
  addresses: Float64Array;
  lengths: Uint32Array;

  /** `capacity` is a hint (normally the queue size): the arrays grow, rarely, if a chain is longer. */
  constructor(capacity: number) {
    this.addresses = new Float64Array(Math.max(1, capacity));
    this.lengths = new Uint32Array(Math.max(1, capacity));
  }

  get capacity(): number {
    return this.addresses.length;
  }

  /** Appends a segment (the queue has validated it). */
  push(address: number, length: number): void {
    const n = this.count;
    if (n === this.addresses.length) {
      const addresses = new Float64Array(2 * n);
      addresses.set(this.addresses);
      const lengths = new Uint32Array(2 * n);
      lengths.set(this.lengths);
      this.addresses = addresses;
      this.lengths = lengths;
    }
    this.addresses[n] = address;
    this.lengths[n] = length;
    this.count = n + 1;
  }

  /** Empties the chain before it is refilled. */
  clear(head: number): void {
    this.head = head;
    this.count = 0;
    this.writableStart = 0;
    this.readableBytes = 0;
    this.writableBytes = 0;
  }

  get readableCount(): number {
    return this.writableStart;
  }

  get writableCount(): number {
    return this.count - this.writableStart;
  }

  /**
   * Copies device-readable bytes [offset, offset + target.length) into target; returns how
   * many bytes were available (less than target.length if the chain is shorter).
   */
  readFrom(memory: GuestMemory, offset: number, target: Uint8Array): number {
    return this.copy(memory, false, offset, target);
  }

  /** Copies source into the device-writable bytes starting at offset; returns bytes written. */
  writeTo(memory: GuestMemory, offset: number, source: Uint8Array): number {
    return this.copy(memory, true, offset, source);
  }

  /**
   * Describes the bytes [offset, offset + length) of the device-readable (writable = false) or
   * device-writable side as host iovecs (struct iovec: u64 base, u64 length) for preadv/pwritev
   * straight into guest memory. `words` is a Uint32Array alias of the caller's iovec array, four
   * words per iovec, written as numbers so that no bigint is made per segment (x86-64: little
   * endian). Neighbouring segments that are contiguous on the host merge into one iovec.
   * Returns the number of iovecs, or -1 when the range cannot be described that way, so the
   * caller copies instead: a segment outside every host-mapped region or crossing a region's end
   * (GuestMemory.hostAddressOf), more than `maxIovecs` iovecs (IOV_MAX), or fewer than `length`
   * bytes on that side. Every segment was checked against guest RAM when the chain was read.
   */
  hostIovecs(memory: GuestMemory, writable: boolean, offset: number, length: number, words: Uint32Array, maxIovecs: number): number {
    const limit = Math.min(maxIovecs, words.length >>> 2);
    let count = 0;
    /** Host address just past the last iovec (-1: none yet), to merge contiguous segments. */
    let nextHost = -1;
    const done = this.eachSegment(writable, offset, length, (address, n) => {
      const host = memory.hostAddressOf(address, n);
      if (host === undefined) return false;
      if (host === nextHost) {
        // Same host run as the previous iovec: lengths stay below 2^32 (chains carry < 2^32 bytes).
        words[4 * count - 2] = words[4 * count - 2]! + n;
      } else {
        if (count === limit) return false;
        const w = 4 * count;
        words[w] = host % 0x1_0000_0000;
        words[w + 1] = Math.floor(host / 0x1_0000_0000);
        words[w + 2] = n;
        words[w + 3] = 0;
        count++;
      }
      nextHost = host + n;
      return true;
    });
    return done === length ? count : -1;
  }

  /**
   * Calls visit(segmentBytes) for the part of the segments [from, to) that covers the byte
   * range [offset, offset + length) of that side of the chain; zero copy when a segment is in
   * one memory view. Returns the number of bytes visited.
   */
  forEachSlice(memory: GuestMemory, writable: boolean, offset: number, length: number, visit: (bytes: Uint8Array, chainOffset: number) => void): number {
    return this.eachSegment(writable, offset, length, (address, n, done) => {
      const view = memory.slice(address, n);
      if (view !== undefined) {
        visit(view, offset + done);
      } else {
        // The segment straddles two 1 GiB views: bounce through a copy.
        const bounce = memory.read(address, n);
        visit(bounce, offset + done);
        if (writable) memory.write(address, bounce);
      }
      return true;
    });
  }

  private copy(memory: GuestMemory, writable: boolean, offset: number, bytes: Uint8Array): number {
    return this.eachSegment(writable, offset, bytes.length, (address, n, done) => {
      if (writable) memory.write(address, bytes.subarray(done, done + n));
      else memory.readInto(address, bytes.subarray(done, done + n));
      return true;
    });
  }

  /**
   * The one walk behind the accessors above: for the part of each segment on one side of the
   * chain that covers the bytes [offset, offset + length), visit(guestAddress, bytes, bytesBefore).
   * Returns the bytes visited (fewer if that side is shorter), or -1 once visit returns false.
   */
  private eachSegment(writable: boolean, offset: number, length: number, visit: (address: number, n: number, done: number) => boolean): number {
    const from = writable ? this.writableStart : 0;
    const to = writable ? this.count : this.writableStart;
    let skipped = 0;
    let done = 0;
    for (let i = from; i < to && done < length; i++) {
      const segLength = this.lengths[i]!;
      if (skipped + segLength <= offset) {
        skipped += segLength;
        continue;
      }
      const inner = offset > skipped ? offset - skipped : 0;
      skipped += segLength;
      const n = Math.min(segLength - inner, length - done);
      if (n === 0) continue;
      if (!visit(this.addresses[i]! + inner, n, done)) return -1;
      done += n;
    }
    return done;
  }
}
