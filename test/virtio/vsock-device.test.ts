import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import type { ActivationContext } from '../../src/virtio/device.js';
import { HybridUnixVsock } from '../../src/virtio/devices/vsock/hybrid-unix.js';
import { openHybridVsockDevice } from '../../src/virtio/devices/vsock/index.js';
import { PacketHeader, VSOCK_HEADER_SIZE, VsockOp } from '../../src/virtio/devices/vsock/packet.js';
import { VsockDevice } from '../../src/virtio/devices/vsock/vsock-device.js';
import { FakeVirtqueue } from './net-fake-virtqueue.js';

const GUEST_CID = 3;
/** Every guest made by a test; reset at its end so no socket keeps the process alive. */
const guests: Guest[] = [];

function resetGuests(): void {
  for (const g of guests.splice(0)) g.device.reset();
}
const RX_BUF = 4096 + VSOCK_HEADER_SIZE;

interface Packet {
  srcPort: number;
  dstPort: number;
  op: number;
  flags: number;
  bufAlloc: number;
  fwdCnt: number;
  payload: Buffer;
}

class Guest {
  readonly memory = GuestMemory.anonymous([{ start: 0, size: 16 << 20 }]);
  readonly rx = new FakeVirtqueue(this.memory, 256, 0x10000, 0x100000);
  readonly tx = new FakeVirtqueue(this.memory, 256, 0x20000, 0x800000);
  readonly ev = new FakeVirtqueue(this.memory, 256, 0x30000, 0xe00000);
  readonly rxAddr = new Map<number, number>();
  readonly inbox: Packet[] = [];
  resets: string[] = [];
  device: VsockDevice;

  constructor(readonly host: HybridUnixVsock) {
    this.device = new VsockDevice({ guestCid: GUEST_CID, host, log: () => {} });
    guests.push(this);
    for (let i = 0; i < 128; i++) this.postRx();
    const context: ActivationContext = {
      memory: this.memory,
      features: 1n << 32n,
      queues: [this.rx.config, this.tx.config, this.ev.config],
      notifyQueue: () => {},
      notifyConfig: () => {},
      needsReset: (r) => this.resets.push(r),
    };
    this.device.activate(context);
  }

  postRx(): void {
    const { head, addr } = this.rx.postWritable(RX_BUF);
    this.rxAddr.set(head, addr);
  }

  send(p: Partial<Packet> & { op: number; dstPort: number; srcPort: number }, overrides: { srcCid?: number; dstCid?: number; type?: number; len?: number } = {}): void {
    const h = new PacketHeader();
    h.srcCid = overrides.srcCid ?? GUEST_CID;
    h.dstCid = overrides.dstCid ?? 2;
    h.srcPort = p.srcPort;
    h.dstPort = p.dstPort;
    const payload = p.payload ?? Buffer.alloc(0);
    h.len = overrides.len ?? payload.length;
    h.type = overrides.type ?? 1;
    h.op = p.op;
    h.flags = p.flags ?? 0;
    h.bufAlloc = p.bufAlloc ?? 65536;
    h.fwdCnt = p.fwdCnt ?? 0;
    const bytes = new Uint8Array(VSOCK_HEADER_SIZE + payload.length);
    bytes.set(h.bytes);
    bytes.set(payload, VSOCK_HEADER_SIZE);
    this.tx.postReadable(bytes);
    this.device.notify(1);
  }

  collect(): Packet[] {
    for (const used of this.rx.takeUsed()) {
      const bytes = this.memory.read(this.rxAddr.get(used.id)!, used.len);
      const h = new PacketHeader();
      h.bytes.set(bytes.subarray(0, VSOCK_HEADER_SIZE));
      assert.equal(h.srcCid, 2);
      assert.equal(h.dstCid, GUEST_CID);
      assert.equal(h.len, used.len - VSOCK_HEADER_SIZE);
      this.inbox.push({ srcPort: h.srcPort, dstPort: h.dstPort, op: h.op, flags: h.flags, bufAlloc: h.bufAlloc, fwdCnt: h.fwdCnt, payload: Buffer.from(bytes.subarray(VSOCK_HEADER_SIZE)) });
      this.postRx();
    }
    return this.inbox;
  }

  async waitFor(match: (p: Packet) => boolean, what: string): Promise<Packet> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const index = this.collect().findIndex(match);
      if (index >= 0) return this.inbox.splice(index, 1)[0]!;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; inbox ops: ${this.inbox.map((p) => p.op).join(',')}`);
      await sleep(5);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

function listen(path: string, onSocket: (s: Socket) => void): Promise<Server> {
  const server = createServer(onSocket);
  return new Promise((resolve) => server.listen(path, () => resolve(server)));
}

function withDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'novm-vsock-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

test('guest connects to a host Unix socket, data both ways, orderly close', async () => {
  const { dir, cleanup } = withDir();
  const host = new HybridUnixVsock(join(dir, 'v.sock'));
  let serverSide: Socket | undefined;
  const received: Buffer[] = [];
  let serverSawClose = false;
  const server = await listen(join(dir, 'v.sock_1234'), (s) => {
    serverSide = s;
    s.on('data', (d) => received.push(d));
    s.on('close', () => { serverSawClose = true; });
  });
  try {
    const g = new Guest(host);
    g.send({ op: VsockOp.Request, srcPort: 5000, dstPort: 1234 });
    const response = await g.waitFor((p) => p.op === VsockOp.Response, 'RESPONSE');
    assert.deepEqual([response.srcPort, response.dstPort], [1234, 5000]);
    assert.equal(response.bufAlloc, 256 * 1024);
    g.send({ op: VsockOp.Rw, srcPort: 5000, dstPort: 1234, payload: Buffer.from('hello host') });
    await until(() => Buffer.concat(received).toString() === 'hello host', 'data at the host');
    serverSide!.write('hello guest');
    const rw = await g.waitFor((p) => p.op === VsockOp.Rw, 'RW');
    assert.equal(rw.payload.toString(), 'hello guest');
    assert.equal(g.device.openConnections, 1);
    g.send({ op: VsockOp.Shutdown, srcPort: 5000, dstPort: 1234, flags: 3 });
    await g.waitFor((p) => p.op === VsockOp.Rst, 'RST after SHUTDOWN');
    await until(() => serverSawClose, 'host socket closed');
    assert.equal(g.device.openConnections, 0);
    assert.deepEqual(g.resets, []);
  } finally {
    resetGuests();
    server.close();
    cleanup();
  }
});

test('a guest that closes right after sending: all it sent reaches a host that reads late, then EOF', async () => {
  const { dir, cleanup } = withDir();
  const host = new HybridUnixVsock(join(dir, 'v.sock'));
  const received: Buffer[] = [];
  let ended = false;
  let serverSide: Socket | undefined;
  const server = await listen(join(dir, 'v.sock_1235'), (s) => {
    serverSide = s;
    // Not reading yet: what the guest sends piles up in the kernel, then in the socket's queue.
    s.pause();
    s.on('data', (d) => received.push(d));
    s.on('end', () => { ended = true; });
  });
  try {
    const g = new Guest(host);
    g.send({ op: VsockOp.Request, srcPort: 5001, dstPort: 1235 });
    await g.waitFor((p) => p.op === VsockOp.Response, 'RESPONSE');
    // 240 KiB (inside the 256 KiB credit): more than a Unix socket's kernel buffer holds.
    const sent = Buffer.alloc(240 * 1024);
    for (let i = 0; i < sent.length; i++) sent[i] = (i * 131) & 0xff;
    for (let off = 0; off < sent.length; off += 60 * 1024) g.send({ op: VsockOp.Rw, srcPort: 5001, dstPort: 1235, payload: sent.subarray(off, off + 60 * 1024) });
    g.send({ op: VsockOp.Shutdown, srcPort: 5001, dstPort: 1235, flags: 3 });
    await g.waitFor((p) => p.op === VsockOp.Rst, 'RST after SHUTDOWN');
    assert.equal(g.device.openConnections, 0);
    await until(() => serverSide !== undefined, 'host connection');
    serverSide!.resume();
    await until(() => ended, 'EOF at the host');
    assert.equal(Buffer.concat(received).length, sent.length);
    assert.ok(Buffer.concat(received).equals(sent));
  } finally {
    resetGuests();
    server.close();
    cleanup();
  }
});

test('connecting to a host port nobody serves gets RST; host EOF becomes SHUTDOWN', async () => {
  const { dir, cleanup } = withDir();
  const host = new HybridUnixVsock(join(dir, 'v.sock'));
  const server = await listen(join(dir, 'v.sock_7'), (s) => s.end('bye'));
  try {
    const g = new Guest(host);
    g.send({ op: VsockOp.Request, srcPort: 1, dstPort: 99 });
    const rst = await g.waitFor((p) => p.op === VsockOp.Rst, 'RST');
    assert.deepEqual([rst.srcPort, rst.dstPort], [99, 1]);
    g.send({ op: VsockOp.Request, srcPort: 2, dstPort: 7 });
    await g.waitFor((p) => p.op === VsockOp.Response, 'RESPONSE');
    const data = await g.waitFor((p) => p.op === VsockOp.Rw, 'RW');
    assert.equal(data.payload.toString(), 'bye');
    // Host EOF: SHUTDOWN(SEND) only; the guest may still write (half-close).
    const half = await g.waitFor((p) => p.op === VsockOp.Shutdown, 'SHUTDOWN(SEND)');
    assert.equal(half.flags, 2);
    assert.equal(g.device.openConnections, 1);
    // The guest is done too: its FIN reaches the host, the socket closes, SHUTDOWN(both).
    g.send({ op: VsockOp.Shutdown, srcPort: 2, dstPort: 7, flags: 2 });
    const full = await g.waitFor((p) => p.op === VsockOp.Shutdown, 'SHUTDOWN(both)');
    assert.equal(full.flags, 3);
    g.send({ op: VsockOp.Rst, srcPort: 2, dstPort: 7 });
    assert.equal(g.device.openConnections, 0);
  } finally {
    resetGuests();
    server.close();
    cleanup();
  }
});

test('host connects with CONNECT, gets OK <port>, streams both ways', async () => {
  const { dir, cleanup } = withDir();
  const path = join(dir, 'v.sock');
  const host = new HybridUnixVsock(path);
  const g = new Guest(host);
  await host.listen(g.device);
  try {
    const client = createConnection({ path });
    const fromGuest: Buffer[] = [];
    client.on('data', (d) => fromGuest.push(d));
    client.write('CONNECT 52\nearly bytes');
    const request = await g.waitFor((p) => p.op === VsockOp.Request, 'REQUEST');
    assert.equal(request.dstPort, 52);
    assert.ok(request.srcPort >= 1 << 30, 'ephemeral host port');
    g.send({ op: VsockOp.Response, srcPort: 52, dstPort: request.srcPort });
    await until(() => Buffer.concat(fromGuest).toString() === `OK ${request.srcPort}\n`, 'OK line');
    const early = await g.waitFor((p) => p.op === VsockOp.Rw, 'early data');
    assert.equal(early.payload.toString(), 'early bytes');
    g.send({ op: VsockOp.Rw, srcPort: 52, dstPort: request.srcPort, payload: Buffer.from('pong') });
    await until(() => Buffer.concat(fromGuest).toString().endsWith('pong'), 'guest data at the client');
    client.destroy();
    await g.waitFor((p) => p.op === VsockOp.Shutdown, 'SHUTDOWN after client close');

    // Garbage instead of CONNECT: the listener hangs up.
    const bad = createConnection({ path });
    let closed = false;
    bad.on('close', () => { closed = true; });
    bad.on('error', () => {});
    bad.write('HELLO\n');
    await until(() => closed, 'bad client closed');
  } finally {
    resetGuests();
    await host.close();
    cleanup();
  }
});

test('credit: data stops at the guest buf_alloc, CREDIT_REQUEST, resumes on CREDIT_UPDATE', async () => {
  const { dir, cleanup } = withDir();
  const host = new HybridUnixVsock(join(dir, 'v.sock'));
  let serverSide: Socket | undefined;
  const server = await listen(join(dir, 'v.sock_9'), (s) => { serverSide = s; });
  try {
    const g = new Guest(host);
    g.send({ op: VsockOp.Request, srcPort: 3, dstPort: 9, bufAlloc: 10 });
    await g.waitFor((p) => p.op === VsockOp.Response, 'RESPONSE');
    await until(() => serverSide !== undefined, 'server socket');
    serverSide!.write('abcdefghijklmnopqrstuvwxy');
    const first = await g.waitFor((p) => p.op === VsockOp.Rw, 'first RW');
    assert.equal(first.payload.toString(), 'abcdefghij');
    await g.waitFor((p) => p.op === VsockOp.CreditRequest, 'CREDIT_REQUEST');
    g.collect();
    assert.equal(g.inbox.filter((p) => p.op === VsockOp.Rw).length, 0, 'nothing beyond the credit');
    g.send({ op: VsockOp.CreditUpdate, srcPort: 3, dstPort: 9, bufAlloc: 10, fwdCnt: 10 });
    const second = await g.waitFor((p) => p.op === VsockOp.Rw, 'second RW');
    assert.equal(second.payload.toString(), 'klmnopqrst');
    g.send({ op: VsockOp.CreditRequest, srcPort: 3, dstPort: 9, bufAlloc: 10, fwdCnt: 10 });
    const update = await g.waitFor((p) => p.op === VsockOp.CreditUpdate, 'CREDIT_UPDATE');
    assert.equal(update.bufAlloc, 256 * 1024);
  } finally {
    resetGuests();
    server.close();
    cleanup();
  }
});

test('a guest overrunning the advertised credit is reset', async () => {
  const { dir, cleanup } = withDir();
  const host = new HybridUnixVsock(join(dir, 'v.sock'));
  const server = await listen(join(dir, 'v.sock_9'), (s) => s.resume());
  try {
    const g = new Guest(host);
    g.send({ op: VsockOp.Request, srcPort: 3, dstPort: 9 });
    await g.waitFor((p) => p.op === VsockOp.Response, 'RESPONSE');
    // Five 64 KiB packets in one kick: the socket's write callbacks have not run yet, so the
    // fifth goes past the 256 KiB we advertised.
    const chunk = Buffer.alloc(64 * 1024, 1);
    for (let i = 0; i < 5; i++) {
      const h = new PacketHeader();
      h.srcCid = GUEST_CID; h.dstCid = 2; h.srcPort = 3; h.dstPort = 9; h.len = chunk.length; h.type = 1; h.op = VsockOp.Rw;
      const bytes = new Uint8Array(VSOCK_HEADER_SIZE + chunk.length);
      bytes.set(h.bytes);
      bytes.set(chunk, VSOCK_HEADER_SIZE);
      g.tx.postReadable(bytes);
    }
    g.device.notify(1);
    await g.waitFor((p) => p.op === VsockOp.Rst, 'RST for the overrun');
    assert.equal(g.device.openConnections, 0);
  } finally {
    resetGuests();
    server.close();
    cleanup();
  }
});

test('hostile packets: no throw, bad ones dropped or reset, device keeps working', async () => {
  const { dir, cleanup } = withDir();
  const host = new HybridUnixVsock(join(dir, 'v.sock'));
  const server = await listen(join(dir, 'v.sock_1'), (s) => s.resume());
  try {
    fc.assert(
      fc.property(
        fc.array(fc.record({
          op: fc.integer({ min: 0, max: 9 }), srcPort: fc.integer({ min: 0, max: 3 }), dstPort: fc.constantFrom(1, 2, 0xffff_ffff),
          flags: fc.integer({ min: 0, max: 7 }), bufAlloc: fc.integer({ min: 0, max: 0xffff_ffff }), fwdCnt: fc.integer({ min: 0, max: 0xffff_ffff }),
          srcCid: fc.constantFrom(GUEST_CID, 2, 0, 99), dstCid: fc.constantFrom(2, 2, GUEST_CID, 7), type: fc.constantFrom(1, 1, 2, 0),
          payload: fc.uint8Array({ maxLength: 64 }), lenDelta: fc.constantFrom(0, 0, 1, 100000),
        }), { maxLength: 30 }),
        (packets) => {
          const g = new Guest(host);
          for (const p of packets) {
            g.send({ ...p, payload: Buffer.from(p.payload) }, { srcCid: p.srcCid, dstCid: p.dstCid, type: p.type, len: p.payload.length + p.lenDelta });
          }
          g.collect();
          assert.ok(g.device.openConnections <= 4);
          // A short chain (no full header) is dropped too.
          g.tx.postReadable(new Uint8Array(10));
          g.device.notify(1);
          g.device.reset();
          assert.equal(g.device.openConnections, 0);
        },
      ),
      { numRuns: 150 },
    );
    // Give the sockets the fuzz opened a moment to settle, then check a clean session works.
    await sleep(50);
    const g = new Guest(host);
    g.send({ op: VsockOp.Request, srcPort: 77, dstPort: 1 });
    await g.waitFor((p) => p.op === VsockOp.Response, 'RESPONSE after fuzzing');
    g.device.reset();
  } finally {
    resetGuests();
    server.close();
    cleanup();
  }
});

test('openHybridVsockDevice listens; CONNECT before the driver is up is refused; close releases everything', async () => {
  const { dir, cleanup } = withDir();
  const path = join(dir, 'v.sock');
  const opened = await openHybridVsockDevice({ guestCid: 42, udsPath: path, log: () => {} });
  try {
    const config = new Uint8Array(8);
    opened.device.readConfig(0, config);
    assert.equal(new DataView(config.buffer).getBigUint64(0, true), 42n);
    const client = createConnection({ path });
    let closed = false;
    let text = '';
    client.on('data', (d) => { text += d.toString(); });
    client.on('close', () => { closed = true; });
    client.on('error', () => {});
    client.write('CONNECT 5\n');
    await until(() => closed, 'refused client closed');
    assert.equal(text, '', 'no OK for an inactive device');
    // A client that never finishes its CONNECT line does not keep close() waiting.
    const idle = createConnection({ path });
    idle.on('error', () => {});
    await sleep(20);
  } finally {
    await opened.close();
    cleanup();
  }
  assert.throws(() => new VsockDevice({ guestCid: 2, host: new HybridUnixVsock('/x') }), /reserved/);
});

test('timeouts: an unanswered host CONNECT and an unacknowledged SHUTDOWN end in RST', async () => {
  const { dir, cleanup } = withDir();
  const path = join(dir, 'v.sock');
  const pending: Array<() => void> = [];
  const timers = { set: (_ms: number, fn: () => void) => { pending.push(fn); return () => { const i = pending.indexOf(fn); if (i >= 0) pending.splice(i, 1); }; } };
  const host = new HybridUnixVsock(path);
  const server = await listen(`${path}_8`, (s) => s.end('x'));
  const g = new Guest(host);
  // Swap in a device with fake timers, on the same rings.
  g.device.reset();
  g.device = new VsockDevice({ guestCid: GUEST_CID, host, log: () => {}, timers });
  g.device.activate({ memory: g.memory, features: 1n << 32n, queues: [g.rx.config, g.tx.config, g.ev.config], notifyQueue: () => {}, notifyConfig: () => {}, needsReset: (r) => g.resets.push(r) });
  await host.listen(g.device);
  try {
    const client = createConnection({ path });
    let closed = false;
    client.on('close', () => { closed = true; });
    client.on('error', () => {});
    client.write('CONNECT 9\n');
    const request = await g.waitFor((p) => p.op === VsockOp.Request, 'REQUEST');
    assert.equal(pending.length, 1, 'connect timer armed');
    pending.shift()!();
    const rst = await g.waitFor((p) => p.op === VsockOp.Rst, 'RST after the connect timeout');
    assert.equal(rst.srcPort, request.srcPort);
    await until(() => closed, 'client closed');

    g.send({ op: VsockOp.Request, srcPort: 4, dstPort: 8 });
    await g.waitFor((p) => p.op === VsockOp.Response, 'RESPONSE');
    await g.waitFor((p) => p.op === VsockOp.Shutdown && p.flags === 2, 'SHUTDOWN(SEND) after host EOF');
    assert.equal(pending.length, 0, 'no timer for a half-close');
    g.send({ op: VsockOp.Shutdown, srcPort: 4, dstPort: 8, flags: 2 });
    await g.waitFor((p) => p.op === VsockOp.Shutdown && p.flags === 3, 'SHUTDOWN(both) after the host socket closed');
    assert.equal(g.device.openConnections, 1);
    assert.equal(pending.length, 1, 'close timer armed');
    pending.shift()!();
    await g.waitFor((p) => p.op === VsockOp.Rst, 'RST after the close timeout');
    assert.equal(g.device.openConnections, 0);
  } finally {
    g.device.reset();
    resetGuests();
    server.close();
    await host.close();
    cleanup();
  }
});

test('half-close: the host stops sending and still reads the guest answer', async () => {
  const { dir, cleanup } = withDir();
  const path = join(dir, 'v.sock');
  const host = new HybridUnixVsock(path);
  const g = new Guest(host);
  await host.listen(g.device);
  try {
    const client = createConnection({ path, allowHalfOpen: true });
    let text = '';
    let ended = false;
    client.on('data', (d) => { text += d.toString(); });
    client.on('end', () => { ended = true; client.end(); });
    client.write('CONNECT 80\nquestion');
    const request = await g.waitFor((p) => p.op === VsockOp.Request, 'REQUEST');
    g.send({ op: VsockOp.Response, srcPort: 80, dstPort: request.srcPort });
    const q = await g.waitFor((p) => p.op === VsockOp.Rw, 'question');
    assert.equal(q.payload.toString(), 'question');
    client.end(); // half-close: no more from the host
    const half = await g.waitFor((p) => p.op === VsockOp.Shutdown, 'SHUTDOWN(SEND)');
    assert.equal(half.flags, 2);
    g.send({ op: VsockOp.Rw, srcPort: 80, dstPort: request.srcPort, payload: Buffer.from('answer') });
    g.send({ op: VsockOp.Shutdown, srcPort: 80, dstPort: request.srcPort, flags: 2 });
    await until(() => ended, 'host sees EOF after the answer');
    assert.equal(text, `OK ${request.srcPort}\nanswer`);
    const full = await g.waitFor((p) => p.op === VsockOp.Shutdown, 'SHUTDOWN(both)');
    assert.equal(full.flags, 3);
  } finally {
    resetGuests();
    await host.close();
    cleanup();
  }
});

test('TRANSPORT_RESET: connections dropped, one event in the guest event buffer', async () => {
  const { dir, cleanup } = withDir();
  const host = new HybridUnixVsock(join(dir, 'v.sock'));
  let hostClosed = false;
  const server = await listen(join(dir, 'v.sock_3'), (s) => { s.on('close', () => { hostClosed = true; }); });
  try {
    const g = new Guest(host);
    assert.equal(g.device.announceTransportReset(), false, 'no event buffer posted yet');
    const { head, addr } = g.ev.postWritable(8);
    g.memory.writeU32LE(addr, 0xdead);
    g.send({ op: VsockOp.Request, srcPort: 1, dstPort: 3 });
    await g.waitFor((p) => p.op === VsockOp.Response, 'RESPONSE');
    assert.equal(g.device.openConnections, 1);
    assert.equal(g.device.announceTransportReset(), true);
    assert.equal(g.device.openConnections, 0);
    assert.deepEqual(g.ev.takeUsed(), [{ id: head, len: 4 }]);
    assert.equal(g.memory.readU32LE(addr), 0, 'VIRTIO_VSOCK_EVENT_TRANSPORT_RESET');
    await until(() => hostClosed, 'host socket closed');
  } finally {
    resetGuests();
    server.close();
    cleanup();
  }
});
