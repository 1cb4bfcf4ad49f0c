// A FUSE handler for FsDevice tests that answers every request with a bare 16-byte out header
// carrying the request's unique id, and the requests to feed it.
import type { FuseRequestHandler } from '../../src/virtio/devices/fs/fs-device.js';

export const echoHandler: FuseRequestHandler = {
  handle(request, done) {
    const reply = new Uint8Array(16);
    new DataView(reply.buffer).setUint32(0, 16, true);
    reply.set(request.subarray(8, 16), 8);
    done(reply);
  },
  forget() {},
};

/** A request of `length` bytes (header and zeroed body) with this opcode and unique id. */
export function echoRequest(unique: number, opcode = 3, length = 40): Uint8Array {
  const r = new Uint8Array(length);
  const v = new DataView(r.buffer);
  v.setUint32(0, length, true);
  v.setUint32(4, opcode, true);
  v.setUint32(8, unique, true);
  return r;
}
