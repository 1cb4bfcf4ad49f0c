// bench:virtiofs-latency — the device's own request round trip, without a guest: a fake
// vhost-user front end in this process (memfd-shared rings, real kick/call eventfds) sends FUSE
// requests to `novm vhost-user fs` and to QEMU's C virtiofsd (/usr/lib/qemu/virtiofsd), each in
// a child process serving the same kind of directory, and times kick -> call round trips. Far
// less noisy than bench:virtiofs (no emulated guest), so it isolates the back end's share.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { GuestAddress } from '../src/memory/address.js';
import { createMemfdMemory, releaseRegions } from '../src/memory/memfd-memory.js';
import * as libc from '../src/native/libc.js';
import { AF_UNIX, POLLIN, SOCK_CLOEXEC, SOCK_STREAM, poll, socket } from '../src/native/socket-calls.js';
import { VIRTIO_F_VERSION_1 } from '../src/virtio/queue/features.js';
import { PROTOCOL_F_REPLY_ACK, Request, VHOST_USER_F_PROTOCOL_FEATURES } from '../src/vhost-user/protocol.js';
import { FakeQueue } from '../test/virtio/fake-driver.js';
import { FakeFrontEnd, concat, u32s, u64 } from '../test/vhost-user/fake-front-end.js';
import { fuseRequest as fuse } from '../test/fs/fake-fuse-client.js';

const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';
if (!existsSync(VIRTIOFSD)) {
  console.log(`bench:virtiofs-latency skipped: ${VIRTIOFSD} not installed`);
  process.exit(0);
}
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 3000);
const MEMORY = 16 << 20;
const UVA = 0x7e00_0000_0000n;
const QUEUE_SIZE = 128;
const FILE_BYTES = 256 * 1024;

interface Figures {
  readonly getattrUs: number;
  readonly read4kUs: number;
  readonly read128kUs: number;
  readonly write128kUs: number;
}

async function measure(label: string, start: (socket: string, shared: string) => ChildProcess, dir: string): Promise<Figures> {
  const shared = join(dir, label);
  mkdirSync(shared);
  writeFileSync(join(shared, 'file'), new Uint8Array(FILE_BYTES).fill(7));
  const path = join(dir, `${label}.sock`);
  const child = start(path, shared);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const { memory, regions } = createMemfdMemory([{ start: 0 as GuestAddress, size: MEMORY }]);
  const kicks = [libc.eventfd(0, libc.EFD_CLOEXEC), libc.eventfd(0, libc.EFD_CLOEXEC)];
  const call = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
  const fd = libc.check('socket', socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  try {
    const f = await FakeFrontEnd.connectTo(fd, path);
    f.send(Request.SetOwner, new Uint8Array());
    f.send(Request.GetFeatures, new Uint8Array());
    await f.receive(5000);
    f.send(Request.SetFeatures, u64(VIRTIO_F_VERSION_1 | VHOST_USER_F_PROTOCOL_FEATURES));
    f.send(Request.GetProtocolFeatures, new Uint8Array());
    const offered = (await f.receive(5000))?.payload.getBigUint64(0, true) ?? 0n;
    f.send(Request.SetProtocolFeatures, u64(offered & PROTOCOL_F_REPLY_ACK));
    f.send(Request.SetMemTable, concat(u32s(1, 0), u64(0n), u64(BigInt(MEMORY)), u64(UVA), u64(0n)), [regions[0]!.fd]);
    const queues = [new FakeQueue(memory, QUEUE_SIZE, 0, 0x10_0000, 0x20_0000), new FakeQueue(memory, QUEUE_SIZE, 0x8000, 0x20_0000, MEMORY)];
    queues.forEach((q, i) => {
      f.send(Request.SetVringNum, u32s(i, QUEUE_SIZE));
      f.send(Request.SetVringBase, u32s(i, 0));
      f.send(Request.SetVringAddr, concat(u32s(i, 0), u64(UVA + BigInt(q.config.descAddr)), u64(UVA + BigInt(q.config.deviceAddr)), u64(UVA + BigInt(q.config.driverAddr)), u64(0n)));
      f.send(Request.SetVringCall, u64(BigInt(i)), [call]);
      f.send(Request.SetVringKick, u64(BigInt(i)), [kicks[i]!]);
      f.send(Request.SetVringEnable, u32s(i, 1));
    });
    // GET_QUEUE_NUM has a reply of its own: when it arrives, everything before it was handled.
    f.send(Request.GetQueueNum, new Uint8Array());
    await f.receive(5000);
    const requests = queues[1]!;
    const one = u64(1n);
    const counter = new Uint8Array(8);
    const pollSet = new Uint8Array(8);
    const pv = new DataView(pollSet.buffer);
    const roundTrip = (request: Uint8Array, replyBytes: number): DataView => {
      const posted = requests.post([{ length: request.length, writable: false, data: request }, { length: replyBytes, writable: true }]);
      libc.write(kicks[1]!, one, 8);
      pv.setInt32(0, call, true);
      pv.setInt16(4, POLLIN, true);
      let used = requests.takeUsed();
      // A call can be left over from an earlier signal: wait until this request is used.
      while (used.length === 0) {
        pv.setInt16(6, 0, true);
        if (poll(pollSet, 1, 10_000) !== 1) throw new Error(`${label}: no call within 10 s`);
        libc.read(call, counter, 8);
        used = requests.takeUsed();
      }
      if (used.length !== 1) throw new Error(`${label}: ${used.length} used entries`);
      const reply = memory.read(posted.addresses[1]!, 16);
      const v = new DataView(reply.buffer);
      if (v.getInt32(4, true) !== 0) throw new Error(`${label}: error ${v.getInt32(4, true)}`);
      return new DataView(memory.read(posted.addresses[1]!, Math.min(used[0]!.length, 256)).buffer);
    };
    roundTrip(fuse(26, 0n, concat(u32s(7, 31, 128 * 1024, 0, 0), new Uint8Array(44))), 4096);
    const entry = roundTrip(fuse(1, 1n, new TextEncoder().encode('file\0')), 256);
    const node = entry.getBigUint64(16, true);
    // OPEN (novm answers ENOSYS: "no open", fh 0; virtiofsd gives a handle).
    const posted = requests.post([{ length: 48, writable: false, data: fuse(14, node, u32s(2, 0)) }, { length: 64, writable: true }]);
    libc.write(kicks[1]!, one, 8);
    pv.setInt16(6, 0, true);
    poll(pollSet, 1, 10_000);
    libc.read(call, counter, 8);
    requests.takeUsed();
    const openReply = new DataView(memory.read(posted.addresses[1]!, 32).buffer);
    const fh = openReply.getInt32(4, true) === 0 ? openReply.getBigUint64(16, true) : 0n;
    const time = (body: () => void, rounds = ROUNDS): number => {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < rounds; i++) body();
      return Number(process.hrtime.bigint() - t0) / rounds / 1000;
    };
    const readIn = (offset: number, size: number): Uint8Array => concat(u64(fh), u64(BigInt(offset)), u32s(size, 0), u64(0n), u32s(0, 0));
    const data = new Uint8Array(128 * 1024).fill(9);
    let k = 0;
    const bodies = {
      getattrUs: () => void roundTrip(fuse(3, 1n, new Uint8Array(16)), 256),
      read4kUs: () => void roundTrip(fuse(15, node, readIn(4096 * (k++ % 64), 4096)), 16 + 4096),
      read128kUs: () => void roundTrip(fuse(15, node, readIn(0, 128 * 1024)), 16 + 128 * 1024),
      write128kUs: () => void roundTrip(fuse(16, node, concat(u64(fh), u64(0n), u32s(data.length, 0), u64(0n), u32s(0, 0), data)), 16 + 8),
    };
    // Warm up every path first: a JIT-compiled server (novm) reaches its steady state only after
    // a few thousand requests, and the steady state is what a running guest sees.
    for (const body of Object.values(bodies)) time(body, 2000);
    const figures: Figures = {
      getattrUs: time(bodies.getattrUs),
      read4kUs: time(bodies.read4kUs),
      read128kUs: time(bodies.read128kUs),
      write128kUs: time(bodies.write128kUs),
    };
    return figures;
  } finally {
    libc.close(fd);
    child.kill();
    await Promise.race([exited, sleep(5000)]);
    for (const e of [...kicks, call]) libc.close(e);
    releaseRegions(regions);
  }
}

const dir = mkdtempSync(join(tmpdir(), 'novm-bench-vfslat-'));
try {
  const novm = await measure('novm', (path, shared) =>
    spawn(process.execPath, [...(process.env['BENCH_NODE_ARGS']?.split(' ').filter((x) => x !== '') ?? []), join(process.cwd(), 'dist/src/cli/main.js'), 'vhost-user', 'fs', '--write', `/=${shared}`, '--socket', path, ...(process.env['BENCH_NOVM_ARGS']?.split(' ').filter((x) => x !== '') ?? [])], { stdio: ['ignore', 'inherit', 'inherit'] }), dir);
  const reference = await measure('virtiofsd', (path, shared) =>
    spawn(VIRTIOFSD, [`--socket-path=${path}`, '-o', `source=${shared}`, '-o', 'cache=auto', '-o', 'sandbox=chroot'], { stdio: ['ignore', 'ignore', 'inherit'] }), dir);
  console.log('request (kick -> call)   novm us   virtiofsd us   ratio (virtiofsd / novm)');
  for (const [name, key] of [['GETATTR', 'getattrUs'], ['READ 4 KiB', 'read4kUs'], ['READ 128 KiB', 'read128kUs'], ['WRITE 128 KiB', 'write128kUs']] as const) {
    console.log(`${name.padEnd(22)}  ${novm[key].toFixed(1).padStart(8)}   ${reference[key].toFixed(1).padStart(12)}   ${(reference[key] / novm[key]).toFixed(2)}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
