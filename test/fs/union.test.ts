// The union engine on real host directories, without FUSE: layer precedence, merged directories,
// copy-up (data, mode, owner, times, xattrs, sparseness), overlayfs whiteouts and opaque
// directories, rename rules, nested mounts, configuration errors and bounded node lifetimes.
import assert from 'node:assert/strict';
import { closeSync, lstatSync, mkdirSync, readFileSync, readSync, rmSync, statSync, symlinkSync, truncateSync, utimesSync, writeFileSync, writeSync, openSync, chownSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { InputError } from '../../src/common/errors.js';
import { getxattr, setxattr } from '../../src/native/fs-calls.js';
import { configFromFlags, FsError, resolveConfig, UnionFs } from '../../src/fs/index.js';
import { scratchDir } from './mount-harness.js';

const O_RDONLY = 0;
const O_RDWR = 2;

function readAll(union: UnionFs, node: Parameters<UnionFs['open']>[0]): string {
  const fd = union.open(node, O_RDONLY);
  try {
    const buf = Buffer.alloc(1 << 16);
    const n = readSync(fd, buf, 0, buf.length, 0);
    return buf.toString('utf8', 0, n);
  } finally {
    closeSync(fd);
  }
}

function errno(fn: () => unknown): number {
  try {
    fn();
  } catch (error) {
    if (error instanceof FsError) return error.errno;
    throw error;
  }
  return 0;
}

function getfattr(path: string, name: string): string | null {
  const b = Buffer.alloc(256);
  const n = getxattr(path, name, b, b.length);
  return n < 0 ? null : b.toString('latin1', 0, n);
}

const haveAttrTools = true;

describe('union engine', () => {
  let dir = '';
  let low1 = '';
  let low2 = '';
  let up = '';
  let union: UnionFs;

  before(() => {
    dir = scratchDir('union');
    low1 = join(dir, 'low1');
    low2 = join(dir, 'low2');
    up = join(dir, 'up');
    for (const d of [low1, low2, up, join(low1, 'd'), join(low2, 'd'), join(up, 'd'), join(low1, 'gone'), join(low1, 'moved')]) mkdirSync(d, { recursive: true });
    writeFileSync(join(low1, 'a.txt'), 'from low1');
    writeFileSync(join(low2, 'a.txt'), 'from low2');
    writeFileSync(join(low1, 'only1'), 'one');
    writeFileSync(join(low1, 'd', 'x'), 'x');
    writeFileSync(join(low2, 'd', 'y'), 'y');
    writeFileSync(join(up, 'd', 'z'), 'z');
    writeFileSync(join(low1, 'gone', 'inside'), 'i');
    writeFileSync(join(low1, 'moved', 'm'), 'm');
    writeFileSync(join(low1, 'meta'), 'metadata');
    chmodSync(join(low1, 'meta'), 0o640);
    chownSync(join(low1, 'meta'), 1234, 5678);
    utimesSync(join(low1, 'meta'), new Date('2001-02-03T04:05:06Z'), new Date('2002-03-04T05:06:07Z'));
    assert.equal(setxattr(join(low1, 'meta'), 'user.colour', Buffer.from('blue'), 4, 0), 0);
    // A sparse 1 GiB file with 4 KiB of data in the middle.
    const fd = openSync(join(low1, 'sparse'), 'w');
    writeSync(fd, Buffer.alloc(4096, 7), 0, 4096, 512 * 1024 * 1024);
    closeSync(fd);
    truncateSync(join(low1, 'sparse'), 1024 * 1024 * 1024);
    symlinkSync('a.txt', join(low1, 'link'));
    union = new UnionFs(configFromFlags([`/=${low1}`, `/=${low2}`], [`/=${up}`]));
  });
  after(() => {
    union.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a later read-only layer wins, the writable layer wins over all', () => {
    assert.equal(readAll(union, union.lookup(union.root, 'a.txt')), 'from low2');
    assert.equal(readAll(union, union.lookup(union.root, 'only1')), 'one');
    writeFileSync(join(up, 'a.txt'), 'from up');
    const fresh = new UnionFs(configFromFlags([`/=${low1}`, `/=${low2}`], [`/=${up}`]));
    assert.equal(readAll(fresh, fresh.lookup(fresh.root, 'a.txt')), 'from up');
    fresh.close();
    rmSync(join(up, 'a.txt'));
  });

  it('directories merge across layers', () => {
    const d = union.lookup(union.root, 'd');
    assert.deepEqual(union.list(d).map((e) => e.name).sort(), ['x', 'y', 'z']);
  });

  it('copy-up keeps data, mode, owner, times and xattrs; the lower file is untouched', () => {
    const node = union.lookup(union.root, 'meta');
    union.copyUp(node);
    const copy = statSync(join(up, 'meta'));
    const orig = statSync(join(low1, 'meta'));
    assert.equal(copy.mode, orig.mode);
    assert.equal(copy.uid, 1234);
    assert.equal(copy.gid, 5678);
    assert.equal(copy.atimeMs, Date.parse('2001-02-03T04:05:06Z'));
    assert.equal(copy.mtimeMs, Date.parse('2002-03-04T05:06:07Z'));
    const fd = union.open(node, O_RDWR);
    writeSync(fd, Buffer.from('METADATA'), 0, 8, 0);
    closeSync(fd);
    assert.equal(readFileSync(join(up, 'meta'), 'utf8'), 'METADATA');
    assert.equal(readFileSync(join(low1, 'meta'), 'utf8'), 'metadata');
    if (haveAttrTools) assert.equal(getfattr(join(up, 'meta'), 'user.colour'), 'blue');
  });

  it('copy-up of a sparse file stays sparse and is not read into memory', () => {
    const node = union.lookup(union.root, 'sparse');
    const rssBefore = process.memoryUsage().rss;
    union.copyUp(node);
    const st = statSync(join(up, 'sparse'));
    assert.equal(st.size, 1024 * 1024 * 1024);
    assert.ok(st.blocks * 512 < 1024 * 1024, `copy allocates ${st.blocks * 512} bytes`);
    assert.ok(process.memoryUsage().rss - rssBefore < 64 * 1024 * 1024);
    const b = Buffer.alloc(4096);
    const fd = openSync(join(up, 'sparse'), 'r');
    readSync(fd, b, 0, 4096, 512 * 1024 * 1024);
    closeSync(fd);
    assert.equal(b[4095], 7);
  });

  it('symlinks are copied up as symlinks, never followed', () => {
    const link = union.lookup(union.root, 'link');
    assert.equal(union.readlink(link).toString(), 'a.txt');
    union.setattr(link, { uid: 42 });
    assert.ok(lstatSync(join(up, 'link')).isSymbolicLink());
    assert.equal(lstatSync(join(up, 'link')).uid, 42);
    assert.notEqual(errno(() => union.open(link, O_RDONLY)), 0);
  });

  it('unlink of a lower file leaves an overlayfs whiteout', () => {
    union.unlink(union.root, 'only1');
    const st = lstatSync(join(up, 'only1'));
    assert.ok(st.isCharacterDevice() && st.rdev === 0, 'whiteout is a 0/0 character device');
    assert.equal(errno(() => union.lookup(union.root, 'only1')), 2);
    assert.ok(!union.list(union.root).some((e) => e.name === 'only1'));
    assert.equal(readFileSync(join(low1, 'only1'), 'utf8'), 'one');
    // Creating the name again replaces the whiteout.
    const made = union.create(union.root, 'only1', 0o644, 0, 0);
    closeSync(made.fd);
    assert.ok(lstatSync(join(up, 'only1')).isFile());
  });

  it('rmdir of a lower directory whiteouts it; mkdir again makes an opaque directory', () => {
    const gone = union.lookup(union.root, 'gone');
    assert.equal(errno(() => union.rmdir(union.root, 'gone')), 39 /* ENOTEMPTY */);
    union.unlink(gone, 'inside');
    union.rmdir(union.root, 'gone');
    assert.ok(lstatSync(join(up, 'gone')).isCharacterDevice());
    const again = union.mkdir(union.root, 'gone', 0o755, 0, 0);
    assert.deepEqual(union.list(again), []);
    if (haveAttrTools) assert.equal(getfattr(join(up, 'gone'), 'trusted.overlay.opaque'), 'y');
    assert.ok(statSync(join(low1, 'gone', 'inside')).isFile());
  });

  it('rename: a lower file moves with a whiteout left behind; merged directories answer EXDEV', () => {
    union.rename(union.root, 'a.txt', union.root, 'b.txt', 0);
    assert.ok(lstatSync(join(up, 'a.txt')).isCharacterDevice());
    assert.equal(readFileSync(join(up, 'b.txt'), 'utf8'), 'from low2');
    assert.equal(errno(() => union.rename(union.root, 'moved', union.root, 'moved2', 0)), 18 /* EXDEV */);
    assert.equal(errno(() => union.rename(union.root, 'b.txt', union.root, 'meta', 1 /* NOREPLACE */)), 17);
    union.rename(union.root, 'b.txt', union.root, 'meta', 2 /* EXCHANGE */);
    assert.equal(readFileSync(join(up, 'meta'), 'utf8'), 'from low2');
    assert.equal(readFileSync(join(up, 'b.txt'), 'utf8'), 'METADATA');
  });

  it('names are single components', () => {
    for (const bad of ['..', '.', 'a/b', '', 'x\0y']) assert.equal(errno(() => union.lookup(union.root, bad)), 22, bad);
    assert.equal(errno(() => union.lookup(union.root, 'n'.repeat(256))), 36);
  });

  it('node lifetimes are bounded: forgotten nodes release their fds and slots', () => {
    const baseline = union.stats();
    const d = union.lookup(union.root, 'd');
    for (let i = 0; i < 200; i++) {
      const made = union.create(d, `f${i}`, 0o644, 0, 0);
      closeSync(made.fd);
      union.forget(made.node, 1);
    }
    for (let i = 0; i < 200; i++) union.forget(union.lookup(d, `f${i}`), 1);
    union.forget(d, 1);
    const now = union.stats();
    assert.ok(now.nodes <= baseline.nodes + 1 && now.openFds <= baseline.openFds + 3, `${JSON.stringify(baseline)} -> ${JSON.stringify(now)}`);
  });
});

describe('mount table', () => {
  let dir = '';
  before(() => {
    dir = scratchDir('mounts');
    for (const d of ['root/usr/local', 'pkgs/bin', 'var', 'deep']) mkdirSync(join(dir, d), { recursive: true });
    writeFileSync(join(dir, 'root/usr/local/hidden'), 'hidden by the mount');
    writeFileSync(join(dir, 'pkgs/bin/tool'), 'tool');
    writeFileSync(join(dir, 'deep/leaf'), 'leaf');
    writeFileSync(join(dir, 'root/file'), 'file');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('the longest VM path wins; paths leading to a mount exist as directories', () => {
    const u = new UnionFs(configFromFlags([`/=${dir}/root`, `/usr/local=${dir}/pkgs`, `/opt/a/b=${dir}/deep`], [`/var=${dir}/var`]));
    const usr = u.lookup(u.root, 'usr');
    const local = u.lookup(usr, 'local');
    assert.deepEqual(u.list(local).map((e) => e.name), ['bin']);
    assert.equal(readAll(u, u.lookup(u.lookup(local, 'bin'), 'tool')), 'tool');
    const opt = u.lookup(u.root, 'opt');
    assert.deepEqual(u.list(u.root).map((e) => e.name).sort(), ['file', 'opt', 'usr', 'var']);
    const b = u.lookup(u.lookup(opt, 'a'), 'b');
    assert.equal(readAll(u, u.lookup(b, 'leaf')), 'leaf');
    // Writes: /var is writable, / and /usr/local are not.
    assert.equal(errno(() => u.mkdir(u.root, 'new', 0o755, 0, 0)), 30 /* EROFS */);
    assert.equal(errno(() => u.mkdir(opt, 'new', 0o755, 0, 0)), 30);
    u.mkdir(u.lookup(u.root, 'var'), 'log', 0o755, 0, 0);
    assert.ok(statSync(join(dir, 'var/log')).isDirectory());
    assert.equal(errno(() => u.rename(u.root, 'var', u.root, 'var2', 0)), 16 /* EBUSY */);
    u.close();
  });

  it('bad configurations are refused with one clear message', () => {
    const bad = (read: string[], write: string[], pattern: RegExp) => {
      assert.throws(() => resolveConfig(configFromFlags(read, write)), (e: unknown) => e instanceof InputError && pattern.test(e.message));
    };
    bad([`/=${dir}/missing`], [], /does not exist/);
    bad([`/=${dir}/root/file`], [], /is not a directory/);
    bad([`/=${dir}/root`], [`/=${dir}/root/usr`], /inside read-only layer/);
    bad([`/=${dir}/root/usr`], [`/=${dir}/root`], /inside writable layer/);
    bad([], [`/a=${dir}/var`, `/b=${dir}/var`], /overlap/);
    bad([], [`/=${dir}/var`, `/=${dir}/deep`], /more than one --write/);
    bad([`relative=${dir}/root`], [], /must be absolute/);
    bad([`nohost`], [], /expects VM=HOST/);
    bad([], [], /no layers/);
  });
});
