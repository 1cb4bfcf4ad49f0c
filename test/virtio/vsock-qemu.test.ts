// novm's virtio-vsock device under Linux's real vsock driver: QEMU TCG attaches the device as a
// vhost-user back end served in this process, and socat in the guest talks to Unix sockets on
// the host both ways (guest connects to host port 1234/1235; host connects with CONNECT 5000).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { VhostUserServer } from '../../src/vhost-user/server.js';
import { HybridUnixVsock } from '../../src/virtio/devices/vsock/hybrid-unix.js';
import { VsockDevice } from '../../src/virtio/devices/vsock/vsock-device.js';
import { buildInitramfs, qemuUnavailableReason, runGuest } from '../qemu/harness.js';

const skipReason = qemuUnavailableReason() ?? (existsSync('/usr/bin/socat') ? undefined : 'socat not installed (Debian package socat)');
const BIG = 2 << 20;

function listenOn(path: string, onSocket: Parameters<typeof createServer>[1]): Promise<Server> {
  const server = createServer(onSocket);
  return new Promise((resolve) => server.listen(path, () => resolve(server)));
}

/** Host side of a host-initiated connection: CONNECT, expect OK, send `data`, close. */
async function connectAndSend(path: string, port: number, data: Buffer, deadline: number): Promise<string> {
  for (;;) {
    const reply = await new Promise<string>((resolve) => {
      const socket = createConnection({ path });
      let text = '';
      socket.on('error', () => resolve(''));
      socket.on('close', () => resolve(text));
      socket.on('data', (chunk) => {
        text += chunk.toString('latin1');
        if (text.includes('\n')) socket.end(data);
      });
      socket.write(`CONNECT ${port}\n`);
    });
    if (reply.startsWith('OK ')) return reply.trim();
    if (Date.now() > deadline) throw new Error('the guest never accepted on port 5000');
    await sleep(200);
  }
}

test('virtio-vsock: Linux socat to and from host Unix sockets through the vhost-user back end', { skip: skipReason, timeout: 180_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'novm-vsockq-'));
  const udsPath = join(dir, 'v.sock');
  const servers: Server[] = [];
  const hybrid = new HybridUnixVsock(udsPath);
  const device = new VsockDevice({ guestCid: 3, host: hybrid });
  const vhost = new VhostUserServer(device, { socketPath: join(dir, 'vhost.sock'), log: () => {} });
  try {
    await hybrid.listen(device);
    // Port 1234: a line echo with a prefix. Port 1235: hashes whatever arrives.
    servers.push(await listenOn(`${udsPath}_1234`, (s) => {
      s.on('data', (d) => s.end(`host-echo:${d.toString()}`));
    }));
    let bigHash = '';
    let bigBytes = 0;
    servers.push(await listenOn(`${udsPath}_1235`, (s) => {
      const h = createHash('sha256');
      s.on('data', (d) => { h.update(d); bigBytes += d.length; });
      s.on('end', () => { bigHash = h.digest('hex'); s.end(); });
    }));
    const served = vhost.run();
    const initramfs = buildInitramfs({
      modules: ['virtio_pci', 'vmw_vsock_virtio_transport'],
      binaries: ['/usr/bin/socat'],
      script: [
        'echo hello-from-guest | timeout 30 socat -t 5 - VSOCK-CONNECT:2:1234 > /tmp/reply',
        'echo reply=$(cat /tmp/reply)',
        `dd if=/dev/urandom of=/tmp/big bs=64k count=${BIG / 65536} 2>/dev/null`,
        'echo bigsent=$(sha256sum /tmp/big | cut -d" " -f1)',
        'timeout 60 socat -u OPEN:/tmp/big VSOCK-CONNECT:2:1235 && echo bigdone=yes',
        'timeout 60 socat -u VSOCK-LISTEN:5000 CREATE:/tmp/got &',
        'wait $!',
        'echo got=$(sha256sum /tmp/got | cut -d" " -f1) gotbytes=$(wc -c < /tmp/got)',
      ].join('\n'),
    });
    const fromHost = Buffer.alloc(BIG);
    for (let i = 0; i < BIG; i += 4) fromHost.writeUInt32LE((i * 2654435761) >>> 0, i);
    const guest = runGuest({
      initramfs,
      qemuArgs: ['-chardev', `socket,id=vs0,path=${join(dir, 'vhost.sock')}`, '-device', 'vhost-user-vsock-pci,chardev=vs0'],
      timeoutMs: 150_000,
    });
    const ok = connectAndSend(udsPath, 5000, fromHost, Date.now() + 140_000);
    const run = await guest;
    const okLine = await ok.catch((e: unknown) => String(e));
    const out = run.output ?? '';
    const detail = `status=${run.status} timedOut=${run.timedOut} ok=${okLine}\n${run.transcript.slice(-3000)}`;
    const field = (name: string): string | undefined => new RegExp(`${name}=(\\S+)`).exec(out)?.[1];
    assert.equal(run.status, 0, detail);
    assert.equal(field('reply'), 'host-echo:hello-from-guest', detail);
    assert.equal(field('bigdone'), 'yes', detail);
    assert.equal(bigBytes, BIG, detail);
    assert.equal(bigHash, field('bigsent'), detail);
    assert.match(okLine, /^OK \d+$/, detail);
    assert.equal(field('gotbytes'), String(BIG), detail);
    assert.equal(field('got'), createHash('sha256').update(fromHost).digest('hex'), detail);
    await served;
  } finally {
    vhost.close();
    for (const s of servers) s.close();
    device.reset();
    await hybrid.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
