// CREATE and MKDIR with their blocking system calls run elsewhere (a MetaIo, as the /dev/fuse
// transport's I/O workers do): the handler answers other requests meanwhile, finishes the reply
// with the right unique id when the job completes, survives a client that forgets the parent in
// between, turns a failed job into an error reply, and keeps set-group-ID and opaque directories
// on the inline path.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { configFromFlags, FuseHandler, UnionFs } from '../../src/fs/index.js';
import type { MetaIo, NewOwner } from '../../src/fs/meta-io.js';
import { AT_SYMLINK_NOFOLLOW, fchownat, lastErrno, mkdirat, O_CLOEXEC, O_CREAT, O_EXCL, O_RDWR, openat } from '../../src/native/fs-calls.js';
import { cstr, FakeFuseClient, OP, type Reply, u32 } from './fake-fuse-client.js';
import { scratchDir } from './mount-harness.js';

const EEXIST = 17;
const ROOT = 1n;

interface Job {
  readonly kind: 'create' | 'mkdir';
  /** Runs the job's system calls now, as a worker thread would, and completes it. */
  run(): void;
  /** Completes the job with `result` without running anything. */
  complete(result: number): void;
}

/** A MetaIo whose jobs wait until the test runs them. */
class DeferredMetaIo implements MetaIo {
  readonly jobs: Job[] = [];
  create(dirFd: number, name: Uint8Array, mode: number, owner: NewOwner, done: (result: number) => void): void {
    this.jobs.push({
      kind: 'create',
      run: () => {
        const fd = openat(dirFd, Buffer.from(name), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, mode);
        if (fd < 0) return done(-lastErrno());
        if (owner.chown) fchownat(dirFd, Buffer.from(name), owner.uid, owner.gid, AT_SYMLINK_NOFOLLOW);
        done(fd);
      },
      complete: done,
    });
  }
  mkdir(dirFd: number, name: Uint8Array, mode: number, owner: NewOwner, done: (result: number) => void): void {
    this.jobs.push({
      kind: 'mkdir',
      run: () => {
        if (mkdirat(dirFd, Buffer.from(name), mode) < 0) return done(-lastErrno());
        if (owner.chown) fchownat(dirFd, Buffer.from(name), owner.uid, owner.gid, AT_SYMLINK_NOFOLLOW);
        done(0);
      },
      complete: done,
    });
  }
}

describe('FUSE handler: CREATE and MKDIR finished after a job elsewhere', () => {
  let dir = '';
  let upper = '';
  let union: UnionFs;
  let meta: DeferredMetaIo;
  let client: FakeFuseClient;

  before(async () => {
    dir = scratchDir('metaio');
    upper = join(dir, 'upper');
    mkdirSync(join(dir, 'lower', 'shadowed'), { recursive: true });
    mkdirSync(join(upper, 'sgid'), { recursive: true });
    writeFileSync(join(upper, 'existing'), 'x');
    union = new UnionFs(configFromFlags([`/=${join(dir, 'lower')}`], [`/=${upper}`]));
    meta = new DeferredMetaIo();
    client = new FakeFuseClient(new FuseHandler(union, { log: () => undefined, metaIo: meta }));
    assert.equal((await client.init()).error, 0);
  });
  after(() => {
    union.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Sends a request whose reply comes later; returns the promise and the request's unique id. */
  function start(opcode: number, parent: bigint, body: Buffer): { reply: Promise<Reply | null>; unique: bigint } {
    const request = client.build(opcode, parent, body);
    return { reply: client.sendRaw(request), unique: request.readBigUInt64LE(8) };
  }
  const createBody = (name: string) => Buffer.concat([u32(2 /* O_RDWR */, 0o640, 0, 0), cstr(name)]);
  const mkdirBody = (name: string) => Buffer.concat([u32(0o750, 0), cstr(name)]);

  it('answers other requests while a CREATE waits for its job, then replies to the CREATE', async () => {
    const pending = start(OP.CREATE, ROOT, createBody('made'));
    let answered = false;
    void pending.reply.then(() => (answered = true));
    assert.equal(meta.jobs.length, 1);
    // The loop is free: a LOOKUP and a GETATTR are answered before the job runs.
    assert.equal((await client.lookup(ROOT, 'existing')).error, 0);
    assert.equal((await client.send(OP.GETATTR, ROOT, Buffer.alloc(16))).error, 0);
    assert.equal(answered, false);
    meta.jobs.shift()!.run();
    const reply = (await pending.reply)!;
    assert.equal(reply.error, 0);
    assert.equal(reply.unique, pending.unique);
    const nodeid = reply.body.readBigUInt64LE(0);
    assert.notEqual(nodeid, 0n);
    assert.equal(statSync(join(upper, 'made')).mode & 0o7777, 0o640);
    const looked = await client.lookup(ROOT, 'made');
    assert.equal(looked.nodeid, nodeid);
  });

  it('keeps the parent alive when the client forgets it before the job completes', async () => {
    const sub = start(OP.MKDIR, ROOT, mkdirBody('parent'));
    meta.jobs.shift()!.run();
    const subId = (await sub.reply)!.body.readBigUInt64LE(0);
    const pending = start(OP.CREATE, subId, createBody('child'));
    // A hostile client drops every lookup of the parent while the CREATE is in flight.
    await client.forget(subId, 1);
    meta.jobs.shift()!.run();
    const reply = (await pending.reply)!;
    assert.equal(reply.error, 0);
    assert.ok(statSync(join(upper, 'parent', 'child')).isFile());
  });

  it('turns a failed job into an error reply with the request\'s unique id', async () => {
    const pending = start(OP.CREATE, ROOT, createBody('raced'));
    // Another host process creates the name first: the job's O_EXCL open fails.
    writeFileSync(join(upper, 'raced'), 'first');
    const fdsBefore = union.openFdCount;
    meta.jobs.shift()!.run();
    const reply = (await pending.reply)!;
    assert.equal(reply.error, EEXIST);
    assert.equal(reply.unique, pending.unique);
    assert.equal(union.openFdCount, fdsBefore);
    const failed = start(OP.MKDIR, ROOT, mkdirBody('never'));
    meta.jobs.shift()!.complete(-EEXIST);
    assert.equal((await failed.reply)!.error, EEXIST);
  });

  it('refuses an existing name before any job is queued', async () => {
    const reply = (await start(OP.CREATE, ROOT, createBody('existing')).reply)!;
    assert.equal(reply.error, EEXIST);
    assert.equal(meta.jobs.length, 0);
  });

  it('makes set-group-ID and opaque directories inline, plain ones through the job', async () => {
    const sgid = await client.lookup(ROOT, 'sgid');
    // Set-group-ID set on the host (the upper layer is the server's own; SETATTR is tested elsewhere).
    chmodSync(join(upper, 'sgid'), 0o2775);
    const inline = (await start(OP.MKDIR, sgid.nodeid, mkdirBody('inherits')).reply)!;
    assert.equal(inline.error, 0);
    assert.equal(meta.jobs.length, 0);
    assert.ok((statSync(join(upper, 'sgid', 'inherits')).mode & 0o2000) !== 0);
    // 'shadowed' exists in the lower layer: delete it, then make it again: it must be opaque,
    // which the inline path does.
    assert.equal((await client.send(OP.RMDIR, ROOT, cstr('shadowed'))).error, 0);
    const opaque = (await start(OP.MKDIR, ROOT, mkdirBody('shadowed')).reply)!;
    assert.equal(opaque.error, 0);
    assert.equal(meta.jobs.length, 0);
    const plain = start(OP.MKDIR, ROOT, mkdirBody('plain'));
    assert.equal(meta.jobs.length, 1);
    assert.equal(meta.jobs[0]!.kind, 'mkdir');
    meta.jobs.shift()!.run();
    assert.equal((await plain.reply)!.error, 0);
    assert.equal(statSync(join(upper, 'plain')).mode & 0o7777, 0o750);
  });
});
