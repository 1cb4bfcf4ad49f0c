// Not a test: measures the kick -> call round trip of `novm vhost-user rng` in a child process
// (run: node dist/test/vhost-user/latency-probe.js). Kept for profiling the notification path.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { GuestAddress } from '../../src/memory/address.js';
import { createMemfdMemory } from '../../src/memory/memfd-memory.js';
import * as libc from '../../src/native/libc.js';
import { AF_UNIX, SOCK_CLOEXEC, SOCK_STREAM, connect, socket, unixAddress } from '../../src/native/socket-calls.js';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_VERSION_1 } from '../../src/virtio/queue/features.js';
import { PROTOCOL_F_REPLY_ACK, Request, VHOST_USER_F_PROTOCOL_FEATURES } from '../../src/vhost-user/protocol.js';
import { FakeQueue } from '../virtio/fake-driver.js';
import { FakeFrontEnd, concat, u32s, u64 } from './fake-front-end.js';

const path = `/tmp/novm-lat-${process.pid}.sock`;
const child = spawn(process.execPath, [join(process.cwd(), 'dist/src/cli/main.js'), 'vhost-user', process.argv[2] ?? 'rng', '--socket', path], { stdio: ['ignore', 'ignore', 'ignore'] });
const watchdog = setTimeout(() => { child.kill(); console.log('HANG'); process.exit(3); }, 15000);
for (let i = 0; i < 200 && !existsSync(path); i++) await sleep(25);
const fd = libc.check('socket', socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
const addr = unixAddress(path);
libc.check('connect', connect(fd, addr, addr.length));
const f = new FakeFrontEnd(fd);
const { memory, regions } = createMemfdMemory([{ start: 0 as GuestAddress, size: 4 << 20 }]);
const kick = libc.eventfd(0, libc.EFD_CLOEXEC);
const call = libc.eventfd(0, libc.EFD_CLOEXEC);
const UVA = 0x7000_0000_0000n;
const eventIdx = process.env['NO_EVENT_IDX'] === undefined;
f.send(Request.SetFeatures, u64(VIRTIO_F_VERSION_1 | (eventIdx ? VIRTIO_F_EVENT_IDX : 0n) | VHOST_USER_F_PROTOCOL_FEATURES));
f.send(Request.SetProtocolFeatures, u64(PROTOCOL_F_REPLY_ACK));
f.send(Request.SetMemTable, concat(u32s(1, 0), u64(0n), u64(4n << 20n), u64(UVA), u64(0n)), [regions[0]!.fd]);
const q = new FakeQueue(memory, 256, 0, 0x10_0000, 0x20_0000);
f.send(Request.SetVringNum, u32s(0, 256));
f.send(Request.SetVringBase, u32s(0, 0));
f.send(Request.SetVringAddr, concat(u32s(0, 0), u64(UVA + BigInt(q.config.descAddr)), u64(UVA + BigInt(q.config.deviceAddr)), u64(UVA + BigInt(q.config.driverAddr)), u64(0n)));
f.send(Request.SetVringCall, u64(0n), [call]);
f.send(Request.SetVringKick, u64(0n), [kick]);
f.send(Request.SetVringEnable, u32s(0, 1), [], { needReply: true });
await f.receive();
const one = u64(1n);
const counter = new Uint8Array(8);
const N = 3000;
let t0 = 0n;
for (let i = 0; i < N + 200; i++) {
  if (i === 200) t0 = process.hrtime.bigint();
  q.setUsedEvent(i & 0xffff);
  q.post([{ length: 16, writable: true }]);
  libc.write(kick, one, 8);
  libc.read(call, counter, 8); // blocks: the back end is another process
  q.takeUsed();
}
const perRequest = Number(process.hrtime.bigint() - t0) / N / 1000;
console.log(`kick -> call round trip through novm vhost-user ${process.argv[2] ?? 'rng'}: ${perRequest.toFixed(1)} us`);
libc.close(fd);
child.kill();
clearTimeout(watchdog);
