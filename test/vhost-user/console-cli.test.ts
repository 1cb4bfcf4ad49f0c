// `novm vhost-user console` end to end: a fake front end drives the real back-end process
// over its socket; what the "guest" writes on port 0 comes out of the process's stdout and
// what is written to its stdin lands in the guest's receive buffers.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { GuestAddress } from '../../src/memory/address.js';
import { createMemfdMemory, releaseRegions } from '../../src/memory/memfd-memory.js';
import * as libc from '../../src/native/libc.js';
import { AF_UNIX, SOCK_CLOEXEC, SOCK_STREAM, socket } from '../../src/native/socket-calls.js';
import { VIRTIO_F_VERSION_1 } from '../../src/virtio/queue/features.js';
import { PROTOCOL_F_REPLY_ACK, Request } from '../../src/vhost-user/protocol.js';
import { FakeQueue } from '../virtio/fake-driver.js';
import { FakeFrontEnd, concat, u32s, u64 } from './fake-front-end.js';

test('novm vhost-user console: guest port 0 <-> process stdout/stdin', { timeout: 30_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'novm-con-'));
  const path = join(dir, 'con.sock');
  const child = spawn(process.execPath, [join(process.cwd(), 'dist/src/cli/main.js'), 'vhost-user', 'console', '--socket', path], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const { memory, regions } = createMemfdMemory([{ start: 0 as GuestAddress, size: 4 << 20 }]);
  const kicks = [libc.eventfd(0, libc.EFD_CLOEXEC), libc.eventfd(0, libc.EFD_CLOEXEC)];
  const calls = [libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK), libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK)];
  const fd = libc.check('socket', socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  try {
    const f = await FakeFrontEnd.connectTo(fd, path);
    const UVA = 0x7100_0000_0000n;
    // Without VIRTIO_CONSOLE_F_MULTIPORT there is one port, always open (§5.3.6).
    f.send(Request.SetFeatures, u64(VIRTIO_F_VERSION_1));
    f.send(Request.SetProtocolFeatures, u64(PROTOCOL_F_REPLY_ACK));
    f.send(Request.SetMemTable, concat(u32s(1, 0), u64(0n), u64(4n << 20n), u64(UVA), u64(0n)), [regions[0]!.fd]);
    const queues = [new FakeQueue(memory, 16, 0, 0x10_0000, 0x18_0000), new FakeQueue(memory, 16, 0x4000, 0x18_0000, 0x20_0000)];
    queues.forEach((q, i) => {
      f.send(Request.SetVringNum, u32s(i, 16));
      f.send(Request.SetVringBase, u32s(i, 0));
      f.send(Request.SetVringAddr, concat(u32s(i, 0), u64(UVA + BigInt(q.config.descAddr)), u64(UVA + BigInt(q.config.deviceAddr)), u64(UVA + BigInt(q.config.driverAddr)), u64(0n)));
      f.send(Request.SetVringCall, u64(BigInt(i)), [calls[i]!]);
      f.send(Request.SetVringKick, u64(BigInt(i)), [kicks[i]!]);
    });
    f.send(Request.GetQueueNum, new Uint8Array());
    assert.equal((await f.receive())?.payload.getBigUint64(0, true), 4n, 'port 0 pair + control pair');
    // Guest -> host.
    queues[1]!.post([{ length: 11, writable: false, data: new TextEncoder().encode('hello host\n') }]);
    libc.write(kicks[1]!, u64(1n), 8);
    for (let i = 0; i < 200 && !stdout.includes('hello host'); i++) await sleep(10);
    assert.equal(stdout, 'hello host\n', stderr);
    // Host -> guest.
    const rx = queues[0]!.post([{ length: 64, writable: true }]);
    libc.write(kicks[0]!, u64(1n), 8);
    child.stdin.write('hello guest\n');
    let used: Array<{ id: number; length: number }> = [];
    for (let i = 0; i < 200 && used.length === 0; i++) {
      await sleep(10);
      used = queues[0]!.takeUsed();
    }
    assert.equal(used.length, 1, stderr);
    assert.equal(new TextDecoder().decode(memory.read(rx.addresses[0]!, used[0]!.length)), 'hello guest\n');
    libc.close(fd);
    assert.equal(await exited, 0, stderr);
  } finally {
    child.kill();
    for (const e of [...kicks, ...calls]) libc.close(e);
    releaseRegions(regions);
    rmSync(dir, { recursive: true, force: true });
  }
});
