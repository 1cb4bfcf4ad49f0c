// A fake FUSE client for tests: builds request bytes as <linux/fuse.h> lays them out (written here
// independently of src/fs) and decodes replies. Drives a FuseHandler with no kernel involved.
import type { FuseHandler } from '../../src/fs/index.js';

export interface Reply {
  error: number;
  unique: bigint;
  body: Buffer;
}

export const OP = {
  LOOKUP: 1, FORGET: 2, GETATTR: 3, SETATTR: 4, READLINK: 5, SYMLINK: 6, MKNOD: 8, MKDIR: 9, UNLINK: 10, RMDIR: 11,
  RENAME: 12, LINK: 13, OPEN: 14, READ: 15, WRITE: 16, STATFS: 17, RELEASE: 18, FSYNC: 20, SETXATTR: 21,
  GETXATTR: 22, LISTXATTR: 23, FLUSH: 25, INIT: 26, OPENDIR: 27, READDIR: 28, RELEASEDIR: 29, CREATE: 35,
  INTERRUPT: 36, BATCH_FORGET: 42, FALLOCATE: 43, READDIRPLUS: 44, RENAME2: 45, LSEEK: 46,
} as const;

export function cstr(s: string): Buffer {
  return Buffer.concat([Buffer.from(s, 'latin1'), Buffer.of(0)]);
}

export function u32(...values: number[]): Buffer {
  const b = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => b.writeUInt32LE(v >>> 0, i * 4));
  return b;
}

export function u64(...values: (number | bigint)[]): Buffer {
  const b = Buffer.alloc(values.length * 8);
  values.forEach((v, i) => b.writeBigUInt64LE(BigInt(v), i * 8));
  return b;
}

let nextUnique = 1n;
/** A FUSE request as <linux/fuse.h> lays it out (fuse_in_header, then the body), uid/gid 0, with
 *  a fresh unique id: for tests and benchmarks that put requests on a virtqueue themselves. */
export function fuseRequest(opcode: number, nodeid: bigint, body: Uint8Array = new Uint8Array()): Uint8Array {
  const out = new Uint8Array(40 + body.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, out.length, true);
  v.setUint32(4, opcode, true);
  v.setBigUint64(8, nextUnique++, true);
  v.setBigUint64(16, nodeid, true);
  out.set(body, 40);
  return out;
}

export class FakeFuseClient {
  private unique = 1n;
  constructor(readonly handler: FuseHandler, readonly uid = 0, readonly gid = 0) {}

  build(opcode: number, nodeid: bigint | number, body: Buffer = Buffer.alloc(0)): Buffer {
    const header = Buffer.alloc(40);
    header.writeUInt32LE(40 + body.length, 0);
    header.writeUInt32LE(opcode, 4);
    header.writeBigUInt64LE(this.unique++, 8);
    header.writeBigUInt64LE(BigInt(nodeid), 16);
    header.writeUInt32LE(this.uid, 24);
    header.writeUInt32LE(this.gid, 28);
    header.writeUInt32LE(process.pid, 32);
    return Buffer.concat([header, body]);
  }

  /** Sends raw bytes; resolves with the decoded reply (or null for no reply). */
  sendRaw(request: Uint8Array): Promise<Reply | null> {
    return new Promise((resolve, reject) => {
      let calls = 0;
      try {
        this.handler.handle(request, (reply) => {
          calls++;
          if (calls > 1) return reject(new Error('done called twice'));
          if (!reply) return resolve(null);
          const b = Buffer.from(reply);
          if (b.length < 16 || b.readUInt32LE(0) !== b.length) return reject(new Error(`bad reply length ${b.length}`));
          resolve({ error: 0 - b.readInt32LE(4), unique: b.readBigUInt64LE(8), body: b.subarray(16) });
        });
      } catch (error) {
        reject(error);
      }
    });
  }

  async send(opcode: number, nodeid: bigint | number, body?: Buffer): Promise<Reply> {
    const reply = await this.sendRaw(this.build(opcode, nodeid, body));
    if (!reply) throw new Error('no reply');
    return reply;
  }

  async init(major = 7, minor = 45, flags = 0xffffffff, flags2 = 0): Promise<Reply> {
    return this.send(OP.INIT, 0, Buffer.concat([u32(major, minor, 128 * 1024, flags, flags2), Buffer.alloc(44)]));
  }

  /** LOOKUP; returns { error, nodeid, mode, ino, size }. */
  async lookup(parent: bigint | number, name: string) {
    const r = await this.send(OP.LOOKUP, parent, cstr(name));
    // A negative entry (node id 0) means ENOENT, cacheable by the client (as the kernel reads it).
    const e = r.error === 0 ? entry(r.body) : null;
    if (e && e.nodeid === 0n) return { error: 2, ...e };
    return { error: r.error, ...(e ?? { nodeid: 0n, mode: 0, ino: 0n, size: 0n }) };
  }

  async open(node: bigint, flags: number): Promise<{ error: number; fh: bigint }> {
    const r = await this.send(OP.OPEN, node, u32(flags, 0));
    // ENOSYS is "no open" mode, as the kernel reads it: success, and I/O carries fh 0.
    if (r.error === 38) return { error: 0, fh: 0n };
    return { error: r.error, fh: r.error === 0 ? r.body.readBigUInt64LE(0) : 0n };
  }

  async read(node: bigint, fh: bigint, offset: number, size: number): Promise<Reply> {
    return this.send(OP.READ, node, Buffer.concat([u64(fh, offset), u32(size, 0), u64(0), u32(0, 0)]));
  }

  async write(node: bigint, fh: bigint, offset: number, data: Buffer): Promise<Reply> {
    return this.send(OP.WRITE, node, Buffer.concat([u64(fh, offset), u32(data.length, 0), u64(0), u32(0, 0), data]));
  }

  /** CREATE: returns the node id and a real file handle. */
  async create(parent: bigint | number, name: string, flags = 2): Promise<{ error: number; nodeid: bigint; fh: bigint }> {
    const r = await this.send(OP.CREATE, parent, Buffer.concat([u32(flags, 0o644, 0, 0), cstr(name)]));
    return { error: r.error, nodeid: r.error === 0 ? r.body.readBigUInt64LE(0) : 0n, fh: r.error === 0 ? r.body.readBigUInt64LE(128) : 0n };
  }

  async release(node: bigint, fh: bigint): Promise<Reply> {
    return this.send(OP.RELEASE, node, Buffer.concat([u64(fh), u32(0, 0), u64(0)]));
  }

  async readlink(node: bigint): Promise<Reply> {
    return this.send(OP.READLINK, node);
  }

  async forget(node: bigint, count: number): Promise<void> {
    const r = await this.sendRaw(this.build(OP.FORGET, node, u64(count)));
    if (r !== null) throw new Error('FORGET got a reply');
  }

  async readdirNames(node: bigint): Promise<string[]> {
    const o = await this.send(OP.OPENDIR, node, u32(0, 0));
    if (o.error) throw new Error(`opendir ${o.error}`);
    const fh = o.body.readBigUInt64LE(0);
    const names: string[] = [];
    let offset = 0n;
    for (;;) {
      const r = await this.send(OP.READDIR, node, Buffer.concat([u64(fh, offset), u32(4096, 0), u64(0), u32(0, 0)]));
      if (r.error) throw new Error(`readdir ${r.error}`);
      if (r.body.length === 0) break;
      let p = 0;
      while (p < r.body.length) {
        const off = r.body.readBigUInt64LE(p + 8);
        const len = r.body.readUInt32LE(p + 16);
        names.push(r.body.toString('latin1', p + 24, p + 24 + len));
        offset = off;
        p += (24 + len + 7) & ~7;
      }
    }
    await this.send(OP.RELEASEDIR, node, Buffer.concat([u64(fh), u32(0, 0), u64(0)]));
    return names.filter((n) => n !== '.' && n !== '..').sort();
  }
}

export function entry(body: Buffer) {
  return {
    nodeid: body.readBigUInt64LE(0),
    ino: body.readBigUInt64LE(40),
    size: body.readBigUInt64LE(48),
    mode: body.readUInt32LE(40 + 60),
  };
}
