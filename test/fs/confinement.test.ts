// Confinement attacks and hostile requests, through the FUSE handler with a fake client: nothing a
// client sends reaches a host path outside the configured trees, and no request crashes the server.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync, existsSync, linkSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { configFromFlags, FuseHandler, UnionFs } from '../../src/fs/index.js';
import { cstr, FakeFuseClient, OP, u32, u64 } from './fake-fuse-client.js';
import { scratchDir } from './mount-harness.js';

const ENOENT = 2, EBADF = 9, EACCES = 13, EXDEV = 18, ENOTDIR = 20, EINVAL = 22, ELOOP = 40, EPROTO = 71, ESTALE = 116, EPERM = 1;
const O_RDONLY = 0, O_RDWR = 2;

describe('FUSE handler: confinement and hostile requests', () => {
  let dir = '';
  let outside = '';
  let union: UnionFs;
  let client: FakeFuseClient;
  const secret = 'host secret outside the trees';

  before(async () => {
    dir = scratchDir('confine');
    outside = join(dir, 'outside');
    mkdirSync(join(dir, 'lower', 'sub'), { recursive: true });
    mkdirSync(join(dir, 'upper'), { recursive: true });
    mkdirSync(outside);
    writeFileSync(join(outside, 'secret'), secret);
    writeFileSync(join(dir, 'lower', 'sub', 'file'), 'inside');
    // Symlinks planted in the lower layer that point out of it, absolutely and relatively.
    symlinkSync(outside, join(dir, 'lower', 'abs'));
    symlinkSync('../outside', join(dir, 'lower', 'rel'));
    symlinkSync(join(outside, 'secret'), join(dir, 'lower', 'abs-file'));
    union = new UnionFs(configFromFlags([`/=${join(dir, 'lower')}`], [`/=${join(dir, 'upper')}`]));
    client = new FakeFuseClient(new FuseHandler(union, { log: () => undefined }));
    const init = await client.init();
    assert.equal(init.error, 0);
  });
  after(() => {
    union.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('negotiates the protocol per <linux/fuse.h>: 7.40 to newer kernels, refuses < 7.31, answers a newer major with its own', async () => {
    const fresh = new FakeFuseClient(new FuseHandler(new UnionFs(configFromFlags([], [`/=${join(dir, 'upper')}`])), { log: () => undefined }));
    const before = await fresh.lookup(1, 'x');
    assert.equal(before.error, 5, 'requests before INIT are refused');
    const newer = await fresh.init(8, 0);
    assert.equal(newer.error, 0);
    assert.equal(newer.body.length, 8);
    assert.deepEqual([newer.body.readUInt32LE(0), newer.body.readUInt32LE(4)], [7, 40]);
    assert.equal((await fresh.init(7, 30)).error, EPROTO);
    const ok = await fresh.init(7, 45);
    assert.equal(ok.error, 0);
    assert.equal(ok.body.readUInt32LE(4), 40);
    assert.equal(ok.body.readUInt32LE(20), 1 << 20, 'max_write 1 MiB');
    const old = await fresh.init(7, 31);
    assert.equal(old.body.readUInt32LE(4), 31, 'a 7.31 client gets 7.31');
  });

  it('".." and multi-component names never leave the tree', async () => {
    const sub = await client.lookup(1, 'sub');
    assert.equal(sub.error, 0);
    for (const name of ['..', '.', '../outside', 'sub/../..', '/etc', 'a/b']) {
      assert.equal((await client.lookup(sub.nodeid, name)).error, EINVAL, name);
      assert.equal((await client.send(OP.MKDIR, sub.nodeid, Buffer.concat([u32(0o755, 0), cstr(name)]))).error, EINVAL, `mkdir ${name}`);
    }
    assert.equal((await client.lookup(1, 'outside')).error, ENOENT);
  });

  it('symlinks pointing outside are returned as text and never followed by the server', async () => {
    for (const name of ['abs', 'rel', 'abs-file']) {
      const link = await client.lookup(1, name);
      assert.equal(link.error, 0);
      assert.equal(link.mode & 0o170000, 0o120000, `${name} is a symlink to the client`);
      const target = await client.readlink(link.nodeid);
      assert.equal(target.error, 0);
      // Looking up a child through it, opening it, listing it, writing through it: all refused.
      assert.equal((await client.lookup(link.nodeid, 'secret')).error, ENOTDIR);
      const opened = await client.open(link.nodeid, O_RDONLY);
      assert.notEqual(opened.error, 0);
      assert.notEqual((await client.read(link.nodeid, 0n, 0, 100)).error, 0, 'fh 0 I/O on a symlink');
      assert.notEqual((await client.write(link.nodeid, 0n, 0, Buffer.from('x'))).error, 0, 'fh 0 write on a symlink');
      assert.notEqual((await client.send(OP.OPENDIR, link.nodeid, u32(0, 0))).error, 0);
      assert.notEqual((await client.send(OP.CREATE, link.nodeid, Buffer.concat([u32(O_RDWR, 0o644, 0, 0), cstr('planted')]))).error, 0);
      assert.notEqual((await client.send(OP.GETXATTR, link.nodeid, Buffer.concat([u32(64, 0), cstr('user.x')]))).error, 0);
    }
    assert.equal(readFileSync(join(outside, 'secret'), 'utf8'), secret);
    assert.ok(!existsSync(join(outside, 'planted')));
  });

  it('a symlink the client creates is stored, not resolved, and cannot be opened as a file', async () => {
    const made = await client.send(OP.SYMLINK, 1, Buffer.concat([cstr('mine'), cstr(join(outside, 'secret'))]));
    assert.equal(made.error, 0);
    const node = made.body.readBigUInt64LE(0);
    const setattr = Buffer.alloc(88);
    setattr.writeUInt32LE(1 << 3, 0); // FATTR_SIZE: truncate through the link
    assert.notEqual((await client.send(OP.SETATTR, node, setattr)).error, 0);
    assert.notEqual((await client.open(node, O_RDWR)).error, 0);
    assert.equal(readFileSync(join(outside, 'secret'), 'utf8'), secret);
  });

  it('host-side races: a looked-up directory swapped for a symlink on the host keeps pointing at the original object', async () => {
    mkdirSync(join(dir, 'upper', 'swap'));
    writeFileSync(join(dir, 'upper', 'swap', 'inner'), 'original');
    const swap = await client.lookup(1, 'swap');
    assert.equal(swap.error, 0);
    // An attacker (or a bug) renames the directory away and plants a symlink to the outside.
    renameSync(join(dir, 'upper', 'swap'), join(dir, 'upper', 'swapped-away'));
    symlinkSync(outside, join(dir, 'upper', 'swap'));
    assert.equal((await client.lookup(swap.nodeid, 'secret')).error, ENOENT);
    const inner = await client.lookup(swap.nodeid, 'inner');
    assert.equal(inner.error, 0);
    const f = await client.open(inner.nodeid, O_RDONLY);
    const data = await client.read(inner.nodeid, f.fh, 0, 100);
    assert.equal(data.body.toString(), 'original');
    await client.release(inner.nodeid, f.fh);
    // Creating through the stale node lands in the moved directory, never in the outside one.
    const c = await client.send(OP.CREATE, swap.nodeid, Buffer.concat([u32(O_RDWR, 0o644, 0, 0), cstr('new')]));
    assert.equal(c.error, 0);
    assert.ok(existsSync(join(dir, 'upper', 'swapped-away', 'new')));
    assert.ok(!existsSync(join(outside, 'new')));
  });

  it('hard links of a host file planted from outside cannot be created by the client across trees', async () => {
    // LINK takes a node id: the client can only link what it can already reach inside the union.
    const forged = await client.send(OP.LINK, 1, Buffer.concat([u64(0xdead_beef), cstr('stolen')]));
    assert.equal(forged.error, ESTALE);
    // A hard link planted on the host is just another file inside the tree (it is the host's choice).
    linkSync(join(outside, 'secret'), join(dir, 'upper', 'planted-by-host'));
    const p = await client.lookup(1, 'planted-by-host');
    assert.equal(p.error, 0);
  });

  it('forged, stale and out-of-range node ids and file handles get ESTALE/EBADF', async () => {
    for (const id of [0n, 2n, 3n, 0xffff_ffffn, (5n << 32n) | 1n, 0xffff_ffff_ffff_ffffn]) {
      assert.equal((await client.send(OP.GETATTR, id, Buffer.alloc(16))).error, ESTALE, `node ${id}`);
      assert.equal((await client.lookup(id, 'sub')).error, ESTALE);
    }
    // File handles (OPENDIR's; OPEN runs in "no open" mode where file I/O carries fh 0).
    const o = await client.send(OP.OPENDIR, 1, u32(0, 0));
    assert.equal(o.error, 0);
    const fh = o.body.readBigUInt64LE(0);
    const readdir = (h: bigint) => client.send(OP.READDIR, 1, Buffer.concat([u64(h, 0), u32(4096, 0), u64(0), u32(0, 0)]));
    assert.equal((await readdir(fh)).error, 0);
    for (const forged of [fh + 1n, fh + (1n << 32n), 0xffff_ffff_ffff_ffffn, 0n, 1n << 32n]) {
      assert.equal((await readdir(forged)).error, EBADF, `fh ${forged}`);
    }
    await client.send(OP.RELEASEDIR, 1, Buffer.concat([u64(fh), u32(0, 0), u64(0)]));
    assert.equal((await readdir(fh)).error, EBADF, 'released handle');
    // Forget the node completely: its id becomes stale and is never reused with the same generation.
    const again = await client.lookup(1, 'abs');
    await client.forget(again.nodeid, 1_000_000);
    assert.equal((await client.send(OP.GETATTR, again.nodeid, Buffer.alloc(16))).error, ESTALE);
    const reused = await client.lookup(1, 'rel');
    assert.notEqual(reused.nodeid, again.nodeid);
  });

  it('writes to the read-only layer are impossible; private overlay xattrs are hidden and protected', async () => {
    const sub = await client.lookup(1, 'sub');
    const f = await client.lookup(sub.nodeid, 'file');
    const w = await client.open(f.nodeid, O_RDWR);
    assert.equal(w.error, 0);
    assert.equal((await client.write(f.nodeid, w.fh, 0, Buffer.from('changed'))).error, 0);
    assert.equal(readFileSync(join(dir, 'lower', 'sub', 'file'), 'utf8'), 'inside');
    assert.equal(readFileSync(join(dir, 'upper', 'sub', 'file'), 'utf8'), 'changed');
    const set = await client.send(OP.SETXATTR, f.nodeid, Buffer.concat([u32(1, 0), cstr('trusted.overlay.opaque'), Buffer.from('y')]));
    assert.equal(set.error, EPERM);
    void EACCES;
    void EXDEV;
    void ELOOP;
  });

  it('malformed requests get an error reply, never an exception (fuzzed)', async () => {
    const handler = client.handler;
    const valid = [
      client.build(OP.LOOKUP, 1, cstr('sub')),
      client.build(OP.GETATTR, 1, Buffer.alloc(16)),
      client.build(OP.READDIRPLUS, 1, Buffer.concat([u64(1, 0), u32(4096, 0), u64(0), u32(0, 0)])),
      client.build(OP.RENAME2, 1, Buffer.concat([u64(1), u32(0, 0), cstr('a'), cstr('b')])),
      client.build(OP.BATCH_FORGET, 0, Buffer.concat([u32(2, 0), u64(7, 1, 9, 1)])),
      client.build(OP.SETXATTR, 1, Buffer.concat([u32(3, 0), cstr('user.a'), Buffer.from('abc')])),
      client.build(OP.WRITE, 1, Buffer.concat([u64(1, 0), u32(1 << 30, 0), u64(0), u32(0, 0)])),
    ];
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ minLength: 0, maxLength: 200 }),
          fc.tuple(fc.constantFrom(...valid), fc.array(fc.tuple(fc.nat(300), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }), fc.nat(300)).map(([base, flips, cut]) => {
            const b = Buffer.from(base);
            for (const [i, v] of flips) if (i < b.length) b[i] = v;
            // Keep the declared length consistent half of the time so deeper parsing is reached.
            if (cut % 2 === 0 && b.length >= 4) b.writeUInt32LE(b.length, 0);
            return new Uint8Array(b.subarray(0, Math.max(0, b.length - (cut % 16))));
          }),
        ),
        async (request) => {
          const reply = await new Promise<Uint8Array | null>((resolve, reject) => {
            try {
              handler.handle(request, (r) => resolve(r ? Uint8Array.from(r) : null));
            } catch (error) {
              reject(error);
            }
          });
          if (reply) {
            const v = new DataView(reply.buffer);
            assert.equal(v.getUint32(0, true), reply.length);
            assert.ok(v.getInt32(4, true) <= 0);
          }
        },
      ),
      { numRuns: 3000 },
    );
    // Still serving afterwards.
    assert.equal((await client.lookup(1, 'sub')).error, 0);
  });
});
