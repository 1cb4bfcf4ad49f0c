// virtio-net against a real Linux tap inside a network namespace this test creates: the device
// transmits an ARP request and an ICMP echo request from fake guest memory, and the kernel's
// answers come back through the tap into the guest's rx buffers. Needs root and /dev/net/tun.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import type { ActivationContext } from '../../src/virtio/device.js';
import {
  NET_HEADER_SIZE, NetDevice, VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4,
  VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_MRG_RXBUF,
} from '../../src/virtio/devices/net/net-device.js';
import { FdPoller } from '../../src/vhost-user/fd-poller.js';
import { TapDevice, type FdReadiness } from '../../src/virtio/devices/net/tap-device.js';
import { TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 } from '../../src/virtio/devices/net/tap-port.js';
import { FakeVirtqueue } from './net-fake-virtqueue.js';

const GUEST_MAC = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
// TEST-NET-1 (RFC 5737), only ever inside the namespace this test owns.
const HOST_IP = [192, 0, 2, 1];
const GUEST_IP = [192, 0, 2, 2];

function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (ip netns, TUNSETIFF)';
  if (!existsSync('/dev/net/tun')) return 'no /dev/net/tun';
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
  } catch {
    return 'no iproute2 (ip)';
  }
  return undefined;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 });
}

function checksum(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i += 2) sum += (bytes[i]! << 8) | (bytes[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function arpRequest(): Uint8Array {
  const f = new Uint8Array(NET_HEADER_SIZE + 42);
  const e = NET_HEADER_SIZE;
  f.fill(0xff, e, e + 6);
  f.set(GUEST_MAC, e + 6);
  f.set([0x08, 0x06], e + 12);
  f.set([0, 1, 0x08, 0x00, 6, 4, 0, 1], e + 14);
  f.set(GUEST_MAC, e + 22);
  f.set(GUEST_IP, e + 28);
  f.set(HOST_IP, e + 38);
  return f;
}

function echoRequest(hostMac: Uint8Array, id: number): Uint8Array {
  const payload = 32;
  const f = new Uint8Array(NET_HEADER_SIZE + 14 + 20 + 8 + payload);
  const e = NET_HEADER_SIZE;
  f.set(hostMac, e);
  f.set(GUEST_MAC, e + 6);
  f.set([0x08, 0x00], e + 12);
  const iph = e + 14;
  const total = 20 + 8 + payload;
  f.set([0x45, 0, total >> 8, total & 0xff, 0, 1, 0x40, 0, 64, 1, 0, 0], iph);
  f.set(GUEST_IP, iph + 12);
  f.set(HOST_IP, iph + 16);
  const ipSum = checksum(f.subarray(iph, iph + 20));
  f[iph + 10] = ipSum >> 8;
  f[iph + 11] = ipSum & 0xff;
  const icmp = iph + 20;
  f.set([8, 0, 0, 0, id >> 8, id & 0xff, 0, 1], icmp);
  for (let i = 0; i < payload; i++) f[icmp + 8 + i] = i;
  const icmpSum = checksum(f.subarray(icmp, icmp + 8 + payload));
  f[icmp + 2] = icmpSum >> 8;
  f[icmp + 3] = icmpSum & 0xff;
  return f;
}

test('real tap in a network namespace: ARP and ICMP echo answered by the kernel', { timeout: 60_000 }, async (t) => {
  const reason = skipReason();
  if (reason !== undefined) {
    t.skip(reason);
    return;
  }
  await scenario('a', undefined);
});

test('the same through a shared poll thread (FdPoller) instead of the libuv pool', { timeout: 60_000 }, async (t) => {
  const reason = skipReason();
  if (reason !== undefined) {
    t.skip(reason);
    return;
  }
  const poller = new FdPoller();
  await poller.ready;
  try {
    await scenario('b', poller);
  } finally {
    await poller.stop();
  }
});

async function scenario(suffix: string, readiness: FdReadiness | undefined): Promise<void> {
  const ns = `novm-net-${process.pid}${suffix}`;
  const ifname = `nvt${process.pid % 1_000_000}${suffix}`;
  ip('netns', 'add', ns);
  let tap: TapDevice | undefined;
  try {
    execFileSync('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', 'net.ipv6.conf.default.disable_ipv6=1', 'net.ipv6.conf.all.disable_ipv6=1'], { stdio: 'ignore' });
    tap = TapDevice.open(readiness === undefined ? { name: ifname } : { name: ifname, readiness });
    assert.equal(tap.name, ifname);
    assert.equal(tap.supportedOffloads & (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6), TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, 'the tap accepts checksum and TSO offloads');
    // The open fd keeps working after the interface moves into the namespace.
    ip('link', 'set', ifname, 'netns', ns);
    ip('-n', ns, 'addr', 'add', '192.0.2.1/24', 'dev', ifname);
    ip('-n', ns, 'link', 'set', ifname, 'up');

    const memory = GuestMemory.anonymous([{ start: 0, size: 8 << 20 }]);
    const device = new NetDevice(tap, { mac: new Uint8Array(GUEST_MAC) });
    const rx = new FakeVirtqueue(memory, 256, 0x10000, 0x100000);
    const tx = new FakeVirtqueue(memory, 256, 0x20000, 0x400000);
    const features = (1n << 32n) | VIRTIO_NET_F_CSUM | VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_TSO4 | VIRTIO_NET_F_GUEST_TSO6 | VIRTIO_NET_F_MRG_RXBUF;
    const resets: string[] = [];
    const context: ActivationContext = {
      memory, features, queues: [rx.config, tx.config],
      notifyQueue: () => {}, notifyConfig: () => {}, needsReset: (r) => resets.push(r),
    };
    const rxBuffers = new Map<number, number>();
    for (let i = 0; i < 64; i++) {
      const { head, addr } = rx.postWritable(2048);
      rxBuffers.set(head, addr);
    }
    device.activate(context);

    const received: Uint8Array[] = [];
    const waitFor = async (match: (f: Uint8Array) => boolean): Promise<Uint8Array> => {
      const deadline = Date.now() + 10_000;
      for (;;) {
        for (const used of rx.takeUsed()) received.push(memory.read(rxBuffers.get(used.id)!, used.len));
        const hit = received.find(match);
        if (hit !== undefined) return hit;
        if (Date.now() > deadline) throw new Error(`no matching frame within 10 s (${received.length} frames seen)`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };

    tx.postReadable(arpRequest());
    device.notify(1);
    const e = NET_HEADER_SIZE;
    const arpReply = await waitFor((f) => f[e + 12] === 0x08 && f[e + 13] === 0x06 && f[e + 21] === 2);
    assert.deepEqual([...arpReply.subarray(e + 28, e + 32)], HOST_IP, 'ARP reply from the host address');
    assert.deepEqual([...arpReply.subarray(e, e + 6)], GUEST_MAC, 'addressed to the guest MAC');
    assert.equal(arpReply[10], 1, 'num_buffers = 1');
    const hostMac = arpReply.slice(e + 22, e + 28);

    tx.postReadable(echoRequest(hostMac, 0x4e56));
    device.notify(1);
    const reply = await waitFor((f) => f[e + 12] === 0x08 && f[e + 13] === 0x00 && f[e + 14 + 9] === 1 && f[e + 34] === 0);
    assert.equal((reply[e + 38]! << 8) | reply[e + 39]!, 0x4e56, 'echo reply carries our identifier');
    assert.deepEqual(resets, []);
    assert.equal(device.metrics.txFrames, 2);
    assert.ok(device.metrics.rxFrames >= 2);
    device.reset();
  } finally {
    tap?.close();
    try {
      ip('netns', 'del', ns);
    } catch {
      // already gone
    }
  }
}
