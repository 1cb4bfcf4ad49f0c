// A READ or WRITE whose data stays where the transport has it (virtio-fs: guest RAM mapped in
// this process) instead of being copied into the request or the reply: the handler moves it with
// preadv/pwritev on iovecs that point there, as C virtiofsd does. The transport decides when it
// can offer one (host-mapped memory, at most IOV_MAX pieces); /dev/fuse never does.
//
//   WRITE  the request handed to the handler holds only fuse_in_header + fuse_write_in; the data
//          that follows them in the request is described by the payload (bytes = what the
//          request carries after the headers, so in_header.len may count up to 80 + bytes).
//   READ   the payload describes the reply's data area, right after the 16-byte out header. A
//          reply is then either complete (header + data, copied as without a payload) or the out
//          header alone, whose len (16 + n) counts the n bytes already placed through the iovecs.
//
// The iovecs are valid only while the handler runs synchronously for that request: anything
// finished later (an asynchronous DataIo, a request parked behind a copy-up) works on gather()'s
// copy, because the transport may unmap or reuse that memory once the handler has returned.

export interface DataPayload {
  /** struct iovec array (u64 base, u64 length pairs) in host memory order; iovCount are in use. */
  readonly iov: BigUint64Array;
  readonly iovCount: number;
  /** Bytes the iovecs in use describe. */
  readonly bytes: number;
  /** Trims the iovecs to exactly `length` bytes (a READ smaller than the client's buffer); false,
   *  and nothing changed, when they describe fewer. */
  limit(length: number): boolean;
  /** The whole request copied as it would be without a payload (headers and, for WRITE, the
   *  data), in memory that stays valid until the reply. */
  gather(): Uint8Array;
}
