// novm's virtio-net device under Linux's real virtio_net driver: QEMU TCG attaches it as a
// vhost-user net back end served in this process, the device's tap lives in a network
// namespace this test creates, and the guest pings the namespace and moves 4 MiB over TCP each
// way (checksum and segmentation offloads on both sides). Needs root, /dev/net/tun and QEMU.
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { VhostUserServer } from '../../src/vhost-user/server.js';
import { NetDevice } from '../../src/virtio/devices/net/net-device.js';
import { TapDevice } from '../../src/virtio/devices/net/tap-device.js';
import { buildInitramfs, qemuUnavailableReason, runGuest } from '../qemu/harness.js';

function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (ip netns, TUNSETIFF)';
  if (!existsSync('/dev/net/tun')) return 'no /dev/net/tun';
  if (!existsSync('/usr/bin/socat')) return 'socat not installed (Debian package socat)';
  return qemuUnavailableReason();
}

const SIZE = 4 << 20;

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 });
}

test('virtio-net: Linux pings and moves TCP data through the tap via the vhost-user back end', { skip: skipReason(), timeout: 240_000 }, async () => {
  await scenario('m', '', true);
});

// Without MRG_RXBUF Linux posts "big packet" chains (GUEST_TSO on) instead of 4 KiB buffers:
// the other rx path of the device, and no checksum offload on the guest's transmit side.
test('virtio-net without mergeable rx buffers or tx checksum offload', { skip: skipReason(), timeout: 240_000 }, async () => {
  await scenario('b', ',mrg_rxbuf=off,csum=off', false);
});

async function scenario(suffix: string, deviceOptions: string, expectCsum: boolean): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'novm-netq-'));
  const ns = `novm-netq-${process.pid}${suffix}`;
  const ifname = `nvq${process.pid % 1_000_000}${suffix}`;
  const children: ChildProcess[] = [];
  const backendLog: string[] = [];
  let tap: TapDevice | undefined;
  let vhost: VhostUserServer | undefined;
  ip('netns', 'add', ns);
  try {
    execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', 'net.ipv6.conf.default.disable_ipv6=1', 'net.ipv6.conf.all.disable_ipv6=1'], { stdio: 'ignore' });
    tap = TapDevice.open({ name: ifname });
    ip('link', 'set', ifname, 'netns', ns);
    ip('-n', ns, 'addr', 'add', '192.0.2.1/24', 'dev', ifname);
    ip('-n', ns, 'link', 'set', ifname, 'up');
    // Namespace side: 8000 receives and hashes; 8001 sends a known file.
    const toGuest = Buffer.alloc(SIZE);
    for (let i = 0; i < SIZE; i += 4) toGuest.writeUInt32LE((i * 2246822519) >>> 0, i);
    writeFileSync(join(dir, 'to-guest'), toGuest);
    const received = join(dir, 'received.sha');
    const nsSh = (script: string): ChildProcess => {
      const child = spawn('ip', ['netns', 'exec', ns, 'sh', '-c', script], { stdio: 'ignore' });
      children.push(child);
      return child;
    };
    nsSh(`timeout 200 socat -u TCP-LISTEN:8000,reuseaddr - | sha256sum | cut -d" " -f1 > ${received}`);
    nsSh(`timeout 200 socat -u OPEN:${join(dir, 'to-guest')} TCP-LISTEN:8001,reuseaddr`);

    const device = new NetDevice(tap, { mac: '52:54:00:12:34:56', log: () => {} });
    const socketPath = join(dir, 'vhost.sock');
    vhost = new VhostUserServer(device, { socketPath, log: (l) => backendLog.push(l) });
    const served = vhost.run();
    const initramfs = buildInitramfs({
      modules: ['virtio_pci', 'virtio_net'],
      binaries: ['/usr/bin/socat'],
      script: [
        'ip link set eth0 up',
        'ip addr add 192.0.2.2/24 dev eth0',
        'echo mac=$(cat /sys/class/net/eth0/address)',
        'echo features=$(cat /sys/bus/virtio/devices/*/features)',
        'ping -c 3 -W 5 192.0.2.1 > /tmp/ping 2>&1; echo ping_rc=$?',
        'grep -c "bytes from 192.0.2.1" /tmp/ping | sed "s/^/replies=/"',
        `dd if=/dev/urandom of=/tmp/out bs=64k count=${SIZE / 65536} 2>/dev/null`,
        'echo sent=$(sha256sum /tmp/out | cut -d" " -f1)',
        'timeout 90 socat -u OPEN:/tmp/out TCP:192.0.2.1:8000 && echo send_ok=yes',
        'timeout 90 socat -u TCP:192.0.2.1:8001 CREATE:/tmp/in && echo recv_ok=yes',
        'echo got=$(sha256sum /tmp/in | cut -d" " -f1)',
      ].join('\n'),
    });
    const run = await runGuest({
      initramfs,
      // vectors=0: QEMU 7.2 (Debian 12) segfaults in msix_set_vector_notifiers ->
      // vhost_net_start when a vhost-user net device uses MSI-X (its config-interrupt masking
      // calls a set_config_call vhost-user does not have). INTx avoids that code path.
      qemuArgs: ['-chardev', `socket,id=n0,path=${socketPath}`, '-netdev', 'vhost-user,id=net0,chardev=n0', '-device', `virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56,vectors=0${deviceOptions}`],
      timeoutMs: 200_000,
    });
    const out = run.output ?? '';
    const detail = `status=${run.status} timedOut=${run.timedOut} metrics=${JSON.stringify(device.metrics)}\n${run.transcript.slice(-3000)}\n--- back end ---\n${backendLog.join('\n')}`;
    const field = (name: string): string | undefined => new RegExp(`${name}=(\\S+)`).exec(out)?.[1];
    assert.equal(run.status, 0, detail);
    assert.equal(field('mac'), '52:54:00:12:34:56', detail);
    assert.equal(field('ping_rc'), '0', detail);
    assert.equal(field('replies'), '3', detail);
    assert.equal(field('send_ok'), 'yes', detail);
    assert.equal(field('recv_ok'), 'yes', detail);
    for (let i = 0; i < 100 && !existsSync(received); i++) await sleep(50);
    await sleep(200);
    assert.equal(readFileSync(received, 'utf8').trim(), field('sent'), `namespace received what the guest sent\n${detail}`);
    assert.equal(field('got'), createHash('sha256').update(toGuest).digest('hex'), detail);
    // Offloads: checksum offload (bit 0) and host TSO4 (bit 11) go together; MRG_RXBUF is bit 15.
    const features = field('features') ?? '';
    assert.equal(features[0], expectCsum ? '1' : '0', `CSUM\n${detail}`);
    // (Linux still acks HOST_TSO4 without CSUM, it just never uses it.)
    if (expectCsum) assert.equal(features[11], '1', `HOST_TSO4\n${detail}`);
    assert.equal(features[15], deviceOptions.includes('mrg_rxbuf=off') ? '0' : '1', `MRG_RXBUF\n${detail}`);
    await served;
  } finally {
    vhost?.close();
    for (const c of children) c.kill();
    tap?.close();
    try {
      ip('netns', 'del', ns);
    } catch {
      // already gone
    }
    rmSync(dir, { recursive: true, force: true });
  }
}
