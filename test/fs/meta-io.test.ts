// CREATE, MKDIR and large copy-ups with their blocking system calls run elsewhere (a MetaIo, as
// the /dev/fuse transport's I/O workers do): the handler answers other requests meanwhile,
// finishes the reply with the right unique id when the job completes, survives a client that
// forgets the parent in between, turns a failed job into error replies, keeps set-group-ID and
// opaque directories on the inline path, and orders the requests that wait for a copy-up.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { configFromFlags, FuseHandler, UnionFs } from '../../src/fs/index.js';
import { DataCopier } from '../../src/fs/copy-data.js';
import { makeEntry } from '../../src/fs/make-entry.js';
import type { MetaIo, NewOwner } from '../../src/fs/meta-io.js';
import { cstr, FakeFuseClient, OP, type Reply, u32, u64 } from './fake-fuse-client.js';
import { scratchDir } from './mount-harness.js';

const EIO = 5;
const EEXIST = 17;
const MiB = 1 << 20;
const ROOT = 1n;

interface Job {
  readonly kind: 'create' | 'mkdir' | 'copy';
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
      run: () => done(makeEntry('file', dirFd, Buffer.from(name), mode, owner)),
      complete: done,
    });
  }
  mkdir(dirFd: number, name: Uint8Array, mode: number, owner: NewOwner, done: (result: number) => void): void {
    this.jobs.push({
      kind: 'mkdir',
      run: () => done(makeEntry('dir', dirFd, Buffer.from(name), mode, owner)),
      complete: done,
    });
  }
  copyData(src: number, dst: number, size: number, done: (result: number) => void): void {
    this.jobs.push({
      kind: 'copy',
      run: () => {
        new DataCopier().copy(src, dst, size);
        done(0);
      },
      complete: done,
    });
  }
  park(): (resume: () => void) => void {
    // The fake client's request bytes stay valid anyway: nothing to hold.
    return (resume) => resume();
  }
}

describe('FUSE handler: CREATE and MKDIR finished after a job elsewhere', () => {
  let dir = '';
  let upper = '';
  let union: UnionFs;
  let meta: DeferredMetaIo;
  let client: FakeFuseClient;
  const lowerBytes = Buffer.alloc(3 * MiB, 'lower-');

  before(async () => {
    dir = scratchDir('metaio');
    upper = join(dir, 'upper');
    mkdirSync(join(dir, 'lower', 'shadowed'), { recursive: true });
    mkdirSync(join(upper, 'sgid'), { recursive: true });
    writeFileSync(join(upper, 'existing'), 'x');
    for (const name of ['big', 'big2', 'big3']) writeFileSync(join(dir, 'lower', name), lowerBytes);
    writeFileSync(join(dir, 'lower', 'small'), 'small');
    union = new UnionFs(configFromFlags([`/=${join(dir, 'lower')}`], [`/=${upper}`]));
    meta = new DeferredMetaIo();
    client = new FakeFuseClient(new FuseHandler(union, { log: () => undefined, metaIo: meta, copyUpInlineMax: MiB }));
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

  const writeBody = (offset: number, data: string) => Buffer.concat([u64(0, offset), u32(data.length, 0), u64(0), u32(0, 0), Buffer.from(data)]);

  it('copies a large lower file up on another thread: reads go on, writes to it and namespace changes beside it wait, in order', async () => {
    const big = await client.lookup(ROOT, 'big');
    const first = start(OP.WRITE, big.nodeid, writeBody(10, 'FIRST'));
    assert.equal(meta.jobs.length, 1);
    assert.equal(meta.jobs[0]!.kind, 'copy');
    // Not copied yet: reads of the node are served from the lower file meanwhile.
    const read = await client.read(big.nodeid, 0n, 0, 6);
    assert.equal(read.body.toString(), 'lower-');
    assert.equal((await client.send(OP.GETATTR, big.nodeid, Buffer.alloc(16))).error, 0);
    // A second write to the node and a rename in its directory wait for the copy (no new job).
    const order: string[] = [];
    const second = start(OP.WRITE, big.nodeid, writeBody(20, 'SECOND'));
    void second.reply.then(() => order.push('second'));
    void first.reply.then(() => order.push('first'));
    const rename = start(OP.RENAME, ROOT, Buffer.concat([u64(ROOT), cstr('big'), cstr('moved')]));
    void rename.reply.then(() => order.push('rename'));
    assert.equal(meta.jobs.length, 1);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(order, []);
    meta.jobs.shift()!.run();
    assert.equal((await first.reply)!.error, 0);
    assert.equal((await second.reply)!.error, 0);
    assert.equal((await rename.reply)!.error, 0);
    assert.deepEqual(order, ['first', 'second', 'rename']);
    const copied = readFileSync(join(upper, 'moved'));
    const expected = Buffer.from(lowerBytes);
    expected.write('FIRST', 10);
    expected.write('SECOND', 20);
    assert.ok(copied.equals(expected), 'the copy holds the lower data with both writes');
    assert.ok(readFileSync(join(dir, 'lower', 'big')).equals(lowerBytes), 'the lower file is unchanged');
  });

  it('answers every waiting request with the error of a failed copy and leaves nothing half-copied', async () => {
    const big = await client.lookup(ROOT, 'big2');
    const write = start(OP.WRITE, big.nodeid, writeBody(0, 'X'));
    const waiting = start(OP.WRITE, big.nodeid, writeBody(1, 'Y'));
    assert.equal(meta.jobs.length, 1);
    meta.jobs.shift()!.complete(-EIO);
    assert.equal((await write.reply)!.error, EIO);
    // The waiting write is handled again and starts a copy of its own, which succeeds.
    assert.equal(meta.jobs.length, 1);
    assert.ok(!existsSync(join(upper, 'big2')), 'no partial copy in the writable layer');
    meta.jobs.shift()!.run();
    assert.equal((await waiting.reply)!.error, 0);
    assert.equal(readFileSync(join(upper, 'big2')).subarray(0, 6).toString(), 'lYwer-');
  });

  it('copies small files up inline', async () => {
    const small = await client.lookup(ROOT, 'small');
    const reply = (await start(OP.WRITE, small.nodeid, writeBody(0, 'S')).reply)!;
    assert.equal(reply.error, 0);
    assert.equal(meta.jobs.length, 0);
    assert.equal(readFileSync(join(upper, 'small'), 'utf8'), 'Small');
  });
});
