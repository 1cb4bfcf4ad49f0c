// bench:net — the same QEMU TCG guest (Debian's kernel, virtio_net driver) and the same tap in
// a private network namespace, served once by novm's NetDevice as an in-process vhost-user net
// back end and once by QEMU's built-in user-space virtio-net on a tap (vhost=off). The guest
// sends and then receives 16 MiB over TCP; it times both with /proc/uptime. The figure is the
// ratio of the two back ends' throughputs, measured side by side in one run. Needs root.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { VhostUserServer } from '../src/vhost-user/server.js';
import { NetDevice } from '../src/virtio/devices/net/net-device.js';
import { TapDevice } from '../src/virtio/devices/net/tap-device.js';
import { buildInitramfs, qemuUnavailableReason, runGuest } from '../test/qemu/harness.js';

const reason = process.getuid?.() !== 0 ? 'needs root (ip netns, taps)' : !existsSync('/usr/bin/socat') ? 'needs socat' : qemuUnavailableReason();
if (reason !== undefined) {
  console.log(`bench:net skipped: ${reason}`);
  process.exit(0);
}

const MIB = Number(process.env['BENCH_MIB'] ?? 32);
const dir = mkdtempSync(join(tmpdir(), 'novm-bench-net-'));
const ns = `novm-bnet-${process.pid}`;
const children: ChildProcess[] = [];

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 });
}

function configureInNamespace(ifname: string): void {
  ip('link', 'set', ifname, 'netns', ns);
  ip('-n', ns, 'addr', 'add', '192.0.2.1/24', 'dev', ifname);
  ip('-n', ns, 'link', 'set', ifname, 'up');
}

/** Namespace side: port 8000 swallows what the guest sends, 8001 serves MIB MiB. */
function startServers(): void {
  for (const script of [
    'timeout 300 socat -u TCP-LISTEN:8000,reuseaddr OPEN:/dev/null',
    `timeout 300 socat -u OPEN:${join(dir, 'payload')} TCP-LISTEN:8001,reuseaddr`,
  ]) children.push(spawn('ip', ['netns', 'exec', ns, 'sh', '-c', script], { stdio: 'ignore' }));
}

function stopServers(): void {
  for (const c of children.splice(0)) c.kill();
}

const script = [
  'ip link set eth0 up',
  'ip addr add 192.0.2.2/24 dev eth0',
  'ping -c 1 -W 5 192.0.2.1 >/dev/null 2>&1 || ping -c 1 -W 5 192.0.2.1 >/dev/null',
  `dd if=/dev/zero of=/tmp/out bs=1M count=${MIB} 2>/dev/null`,
  't0=$(cut -d" " -f1 /proc/uptime)',
  'timeout 240 socat -u OPEN:/tmp/out TCP:192.0.2.1:8000',
  't1=$(cut -d" " -f1 /proc/uptime)',
  'timeout 240 socat -u TCP:192.0.2.1:8001 OPEN:/dev/null',
  't2=$(cut -d" " -f1 /proc/uptime)',
  'echo tx_seconds=$(echo "$t0 $t1" | awk \'{print $2-$1}\') rx_seconds=$(echo "$t1 $t2" | awk \'{print $2-$1}\')',
].join('\n');

async function measure(label: string, qemuArgs: string[]): Promise<{ tx: number; rx: number }> {
  startServers();
  try {
    const initramfs = buildInitramfs({ modules: ['virtio_pci', 'virtio_net'], binaries: ['/usr/bin/socat'], script });
    const run = await runGuest({ initramfs, qemuArgs, timeoutMs: 600_000 });
    const tx = Number(/tx_seconds=([0-9.]+)/.exec(run.output ?? '')?.[1]);
    const rx = Number(/rx_seconds=([0-9.]+)/.exec(run.output ?? '')?.[1]);
    if (!(tx > 0) || !(rx > 0)) throw new Error(`${label}: no timings\n${run.transcript.slice(-3000)}`);
    return { tx: MIB / tx, rx: MIB / rx };
  } finally {
    stopServers();
  }
}

ip('netns', 'add', ns);
try {
  writeFileSync(join(dir, 'payload'), Buffer.alloc(MIB << 20, 0x5a));
  execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', 'net.ipv6.conf.default.disable_ipv6=1'], { stdio: 'ignore' });

  // novm: NetDevice on its own tap, served over vhost-user from this process.
  const tap = TapDevice.open({ name: `nbn${process.pid % 100000}` });
  configureInNamespace(tap.name);
  const device = new NetDevice(tap, { mac: '52:54:00:12:34:56', log: () => {} });
  const socketPath = join(dir, 'vhost.sock');
  const vhost = new VhostUserServer(device, { socketPath, log: () => {} });
  const served = vhost.run();
  // vectors=0: QEMU 7.2 crashes on vhost-user net with MSI-X under TCG (see docs/pci.md);
  // the QEMU run below uses the same setting so both see INTx.
  const novm = await measure('novm', ['-chardev', `socket,id=n0,path=${socketPath}`, '-netdev', 'vhost-user,id=net0,chardev=n0', '-device', 'virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56,vectors=0']);
  vhost.close();
  await served;
  tap.close();
  ip('-n', ns, 'link', 'del', tap.name);

  // QEMU: its own virtio-net on a persistent tap it attaches in the root namespace; the tap
  // moves into the namespace once QEMU holds it (the open fd survives the move).
  const qtap = `nbq${process.pid % 100000}`;
  ip('tuntap', 'add', 'dev', qtap, 'mode', 'tap', 'vnet_hdr');
  ip('link', 'set', qtap, 'up');
  const mover = (async () => {
    for (let i = 0; i < 400; i++) {
      const carrier = (() => {
        try {
          return readFileSync(`/sys/class/net/${qtap}/carrier`, 'utf8').trim();
        } catch {
          return '0';
        }
      })();
      if (carrier === '1') {
        configureInNamespace(qtap);
        return;
      }
      await sleep(25);
    }
    throw new Error('QEMU never attached its tap');
  })();
  const qemuRun = measure('qemu', ['-netdev', `tap,id=net0,ifname=${qtap},script=no,downscript=no,vhost=off`, '-device', 'virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56,vectors=0']);
  await mover;
  const qemu = await qemuRun;
  try {
    ip('-n', ns, 'tuntap', 'del', 'dev', qtap, 'mode', 'tap');
  } catch {
    // gone with QEMU's fd
  }

  console.log('direction        novm MiB/s  qemu MiB/s  ratio');
  console.log(`guest -> host    ${novm.tx.toFixed(2).padStart(10)}  ${qemu.tx.toFixed(2).padStart(10)}  ${(novm.tx / qemu.tx).toFixed(2)}`);
  console.log(`host -> guest    ${novm.rx.toFixed(2).padStart(10)}  ${qemu.rx.toFixed(2).padStart(10)}  ${(novm.rx / qemu.rx).toFixed(2)}`);
  const geomean = Math.sqrt((novm.tx / qemu.tx) * (novm.rx / qemu.rx));
  console.log(`bench:net novm vhost-user net / QEMU virtio-net on tap (TCP throughput, ${MIB} MiB each way, geometric mean, QEMU TCG guest): ${geomean.toFixed(2)}`);
} finally {
  stopServers();
  try {
    ip('netns', 'del', ns);
  } catch {
    // already gone
  }
  rmSync(dir, { recursive: true, force: true });
}
