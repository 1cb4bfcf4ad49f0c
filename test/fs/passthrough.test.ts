// FUSE passthrough: the handler's choice of I/O mode per open (it must follow the kernel's rule of
// one mode per inode, and never pass through to a file a copy-up could replace), and the real
// thing through the kernel: reads of a passthrough file reach no server, the lower layer of a
// union is never written, and backing registrations do not outlive the opens.
import assert from 'node:assert/strict';
import { closeSync, fstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { release, tmpdir } from 'node:os';
import { gunzipSync } from 'node:zlib';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { configFromFlags } from '../../src/fs/config.js';
import { FuseHandler } from '../../src/fs/fuse-handler.js';
import type { BackingFiles } from '../../src/fs/passthrough.js';
import { UnionFs } from '../../src/fs/union.js';
import { cleanup, fuseUnavailable, type RunningMount, scratchDir, startMount } from './mount-harness.js';
import { FakeFuseClient } from './fake-fuse-client.js';

const FUSE_WRITEBACK_CACHE = 1 << 16;
const FUSE_INIT_EXT = 1 << 30;
const FUSE2_PASSTHROUGH = 1 << 5;
const FOPEN_PASSTHROUGH = 1 << 7;
const O_RDONLY = 0;
const O_RDWR = 2;

/** Records registrations like the kernel's idr: ids from 1, closing an unknown id is a bug. */
class FakeBacking implements BackingFiles {
  next = 1;
  readonly live = new Map<number, number>();
  refuse = 0;
  open(fd: number): number {
    if (this.refuse !== 0) return -this.refuse;
    const id = this.next++;
    this.live.set(id, fd);
    return id;
  }
  close(id: number): void {
    assert.ok(this.live.delete(id), `backing id ${id} closed twice or never opened`);
  }
}

describe('FUSE handler: passthrough I/O modes', () => {
  let dir = '';
  let backing: FakeBacking;
  let client: FakeFuseClient;
  let union: UnionFs;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'novm-passthrough-'));
    mkdirSync(join(dir, 'lower'));
    mkdirSync(join(dir, 'upper'));
    mkdirSync(join(dir, 'ro'));
    writeFileSync(join(dir, 'lower/low.txt'), 'lower');
    writeFileSync(join(dir, 'upper/up.txt'), 'upper');
    writeFileSync(join(dir, 'ro/only.txt'), 'read-only mount');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const start = async (withBacking: boolean, flags2 = FUSE2_PASSTHROUGH) => {
    backing = new FakeBacking();
    union = new UnionFs(configFromFlags([`/=${join(dir, 'lower')}`, `/ro=${join(dir, 'ro')}`], [`/=${join(dir, 'upper')}`]));
    client = new FakeFuseClient(new FuseHandler(union, { log: () => undefined, ...(withBacking ? { backingFiles: backing } : {}) }));
    return client.init(7, 45, 0xffffffff, flags2);
  };
  const openFlags = async (node: bigint, flags: number) => {
    const r = await client.send(14, node, Buffer.from(Uint32Array.of(flags, 0).buffer));
    assert.equal(r.error, 0);
    return { fh: r.body.readBigUInt64LE(0), openFlags: r.body.readUInt32LE(8), backingId: r.body.readInt32LE(12) };
  };

  it('negotiates passthrough only when the transport registers backing files and the kernel offers it', async () => {
    const on = await start(true);
    assert.equal(on.body.readUInt32LE(4), 40, 'protocol 7.40');
    assert.equal(on.body.readUInt32LE(32) & FUSE2_PASSTHROUGH, FUSE2_PASSTHROUGH);
    assert.equal(on.body.readUInt32LE(36), 1, 'max_stack_depth');
    assert.equal(on.body.readUInt32LE(12) & FUSE_WRITEBACK_CACHE, 0, 'no writeback cache with passthrough');
    assert.notEqual(on.body.readUInt32LE(12) & FUSE_INIT_EXT, 0);
    const notOffered = await start(true, 0);
    assert.equal(notOffered.body.readUInt32LE(32), 0);
    assert.notEqual(notOffered.body.readUInt32LE(12) & FUSE_WRITEBACK_CACHE, 0);
    const noTransport = await start(false);
    assert.equal(noTransport.body.readUInt32LE(32), 0);
    // Without passthrough OPEN is answered in "no open" mode (ENOSYS); with it, OPEN is real.
    const up = await client.lookup(1, 'up.txt');
    assert.equal((await client.send(14, up.nodeid, Buffer.from(Uint32Array.of(O_RDONLY, 0).buffer))).error, 38);
  });

  it('passes through writable-layer files, one backing file per inode until the node is forgotten', async () => {
    await start(true);
    const up = await client.lookup(1, 'up.txt');
    const a = await openFlags(up.nodeid, O_RDONLY);
    const b = await openFlags(up.nodeid, O_RDWR);
    assert.equal(a.openFlags, FOPEN_PASSTHROUGH);
    assert.ok(a.backingId > 0);
    assert.equal(b.backingId, a.backingId, 'a second open of the inode names the same backing file');
    assert.equal(backing.live.size, 1);
    await client.release(up.nodeid, a.fh);
    await client.release(up.nodeid, b.fh);
    assert.equal(backing.live.size, 1, 'the registration outlives the opens');
    const again = await openFlags(up.nodeid, O_RDONLY);
    assert.equal(again.backingId, a.backingId, 'a reopen reuses it (no new registration)');
    assert.equal(backing.next, 2);
    await client.release(up.nodeid, again.fh);
    // FSYNC, LSEEK and FALLOCATE name a passthrough handle too: served through the node's fd.
    const handle = await openFlags(up.nodeid, O_RDWR);
    assert.equal((await client.send(20, up.nodeid, Buffer.concat([Buffer.from(BigUint64Array.of(handle.fh).buffer), Buffer.alloc(8)]))).error, 0, 'FSYNC');
    assert.equal((await client.send(43, up.nodeid, Buffer.from(BigUint64Array.of(handle.fh, 0n, 4096n, 0n).buffer))).error, 0, 'FALLOCATE');
    await client.release(up.nodeid, handle.fh);
    await client.forget(up.nodeid, 1);
    assert.equal(backing.live.size, 0, 'forgetting the node drops its registration');
    const created = await client.create(1, 'new.txt');
    assert.equal(created.error, 0);
    assert.equal(backing.live.size, 1, 'CREATE opens passthrough too');
    await client.release(created.nodeid, created.fh);
    await client.forget(created.nodeid, 1);
    assert.equal(backing.live.size, 0);
  });

  it('serves lower files itself, keeps an inode cached while cached opens exist, and passes through a read-only mount', async () => {
    await start(true);
    const low = await client.lookup(1, 'low.txt');
    const reader = await openFlags(low.nodeid, O_RDONLY);
    assert.equal(reader.backingId, 0, 'a lower file a copy-up could replace is never passed through');
    // The write open copies the file up; a cached open of the inode is still there, so this open
    // must be cached too (the kernel refuses mixed modes).
    const writer = await openFlags(low.nodeid, O_RDWR);
    assert.equal(writer.backingId, 0);
    assert.equal(readFileSync(join(dir, 'upper/low.txt'), 'utf8'), 'lower', 'copied up');
    await client.release(low.nodeid, reader.fh);
    await client.release(low.nodeid, writer.fh);
    const later = await openFlags(low.nodeid, O_RDONLY);
    assert.ok(later.backingId > 0, 'once copied up and closed, the file is passed through');
    await client.release(low.nodeid, later.fh);
    await client.forget(low.nodeid, 1);
    const roDir = await client.lookup(1, 'ro');
    const only = await client.lookup(roDir.nodeid, 'only.txt');
    const ro = await openFlags(only.nodeid, O_RDONLY);
    assert.ok(ro.backingId > 0, 'a mount with no writable layer never copies up');
    await client.release(only.nodeid, ro.fh);
    await client.forget(only.nodeid, 1);
    assert.equal(backing.live.size, 0);
  });

  it('falls back to serving files itself when the kernel refuses registration', async () => {
    await start(true);
    backing.refuse = 1; // EPERM: no CAP_SYS_ADMIN
    const up = await client.lookup(1, 'up.txt');
    const a = await openFlags(up.nodeid, O_RDWR);
    assert.equal(a.backingId, 0);
    const read = await client.read(up.nodeid, a.fh, 0, 5);
    assert.equal(read.body.toString(), 'upper', 'served by the server');
    backing.refuse = 0;
    const b = await openFlags(up.nodeid, O_RDONLY);
    assert.equal(b.backingId, 0, 'after EPERM no further attempt');
    await client.release(up.nodeid, a.fh);
    await client.release(up.nodeid, b.fh);
  });

  it('a CREATE the kernel will not pass through leaves the created fd to its handle alone', async () => {
    await start(true);
    backing.refuse = 24; // EMFILE: this open only
    const created = await client.create(1, 'refused.txt');
    assert.equal(created.error, 0);
    assert.equal(backing.live.size, 0);
    await client.release(created.nodeid, created.fh); // closes the handle's fd
    const other = openSync(join(dir, 'upper/up.txt'), 'r'); // the lowest free number: likely that fd's
    try {
      await client.forget(created.nodeid, 1); // frees the node
      assert.doesNotThrow(() => fstatSync(other), 'freeing the node closed an fd it never owned');
    } finally {
      closeSync(other);
    }
  });
});

/** Why the kernel cannot do FUSE passthrough here, or false. */
function passthroughUnavailable(): string | false {
  const [major = 0, minor = 0] = release().split('.').map((x) => Number.parseInt(x, 10));
  if (major < 6 || (major === 6 && minor < 9)) return `kernel ${release()} predates FUSE passthrough (6.9)`;
  try {
    const config = gunzipSync(readFileSync('/proc/config.gz')).toString();
    if (!/^CONFIG_FUSE_PASSTHROUGH=y/m.test(config)) return 'this kernel is built without CONFIG_FUSE_PASSTHROUGH';
  } catch {
    // No /proc/config.gz: assume the 6.9+ default (y).
  }
  return process.getuid?.() === 0 ? false : 'registering backing files needs CAP_SYS_ADMIN';
}

const skip = fuseUnavailable() || passthroughUnavailable();

/** The server's stats once `settled` holds (they are published just after each reply, and
 *  RELEASE arrives asynchronously after close(2)), or the last ones after 2 s. */
async function statsWhen(m: RunningMount, settled: (s: Record<string, number>) => boolean): Promise<Record<string, number>> {
  let s = await m.stats();
  for (let i = 0; i < 50 && !settled(s); i++) {
    await new Promise((r) => setTimeout(r, 40));
    s = await m.stats();
  }
  return s;
}

describe('novm fs mount: passthrough through the kernel', { skip }, () => {
  let dir = '';
  before(() => {
    dir = scratchDir('passthrough');
    mkdirSync(join(dir, 'lower'));
    mkdirSync(join(dir, 'upper'));
    writeFileSync(join(dir, 'lower/l.txt'), 'lower bytes');
  });
  after(() => cleanup(dir));

  /** Reads a file written behind the server (so no page cache of the mount holds it), in 1 MiB
   *  steps; returns the server's requests meanwhile and the bytes. */
  const readThrough = async (extra: string[], name: string) => {
    const data = randomBytes(8 << 20);
    writeFileSync(join(dir, 'upper', name), data);
    const m = await startMount([...extra, '--read', `/=${join(dir, 'lower')}`, '--write', `/=${join(dir, 'upper')}`], join(dir, `mnt-${name}`));
    try {
      const fd = openSync(join(m.mountPoint, name), 'r');
      const open = await statsWhen(m, (s) => s['files'] === 1);
      const buf = Buffer.alloc(data.length);
      for (let o = 0; o < data.length; ) o += readSync(fd, buf, o, Math.min(1 << 20, data.length - o), o);
      const read = await m.stats();
      closeSync(fd);
      assert.ok(buf.equals(data), 'bytes read through the mount equal the host file');
      return { requests: read['requests']! - open['requests']!, backingOpen: open['backing']!, stderr: m.stderr() };
    } finally {
      assert.equal(await m.stop(), 0, m.stderr());
    }
  };

  it('reads of a passthrough file reach no server; without passthrough every MiB is a READ', async () => {
    const on = await readThrough([], 'pt.bin');
    assert.equal(on.backingOpen, 1, `a backing file is registered while the file is open\n${on.stderr}`);
    assert.ok(on.requests <= 2, `8 MiB read with ${on.requests} requests`);
    const off = await readThrough(['--no-passthrough'], 'cached.bin');
    assert.equal(off.backingOpen, 0);
    assert.ok(off.requests >= 8, `without passthrough 8 MiB took ${off.requests} requests`);
  });

  it('writes land in the writable layer, a lower file open for reading is copied up on write, the lower layer is untouched', async () => {
    const m = await startMount(['--read', `/=${join(dir, 'lower')}`, '--write', `/=${join(dir, 'upper')}`], join(dir, 'mnt-rw'));
    try {
      const path = join(m.mountPoint, 'l.txt');
      const reader = openSync(path, 'r');
      const writer = openSync(path, 'r+');
      writeSync(writer, 'LOWER', 0);
      closeSync(writer);
      closeSync(reader);
      assert.equal(readFileSync(join(dir, 'upper/l.txt'), 'utf8'), 'LOWER bytes');
      assert.equal(readFileSync(join(dir, 'lower/l.txt'), 'utf8'), 'lower bytes', 'the read-only layer was never written');
      // Now in the writable layer and closed: the next opens are passthrough, and writes through
      // them reach the host file directly. (Its cached opens may still be on their way as
      // RELEASE: wait for them.)
      await statsWhen(m, (x) => x['files'] === 0);
      const fd = openSync(path, 'r+');
      assert.equal((await statsWhen(m, (x) => x['files'] === 1))['backing'], 1);
      writeSync(fd, 'again', 0);
      closeSync(fd);
      assert.equal(readFileSync(join(dir, 'upper/l.txt'), 'utf8'), 'again bytes');
      assert.equal(readFileSync(path, 'utf8'), 'again bytes');
      assert.equal((await statsWhen(m, (x) => x['files'] === 0))['backing'], 1, 'the registration outlives the opens');
      // When the kernel forgets the inode (evicted here), the registration goes with the node.
      writeFileSync('/proc/sys/vm/drop_caches', '2');
      const s = await statsWhen(m, (x) => x['backing'] === 0);
      assert.equal(s['backing'], 0, 'no registration outlives its node');
      assert.equal(s['files'], 0);
    } finally {
      assert.equal(await m.stop(), 0, m.stderr());
    }
  });
});
