// virtio-net behind virtio-pci and the PCI segment: a fake driver brings the device up through
// config space and BAR 0 only, with MSI-X, then frames move both ways and interrupts arrive as
// MSI messages. This is the whole in-VMM path short of KVM.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { PCI_MMIO_START } from '../../src/memory/layout.js';
import { PciSegment } from '../../src/pci/segment.js';
import { NET_HEADER_SIZE, NetDevice } from '../../src/virtio/devices/net/net-device.js';
import { TUN_F_CSUM } from '../../src/virtio/devices/net/tap-port.js';
import { VirtioPciDevice } from '../../src/virtio/transport/virtio-pci.js';
import { RecordingSink, read, write } from '../pci/fakes.js';
import { FakeTap } from './net-fake-tap.js';
import { FakeVirtqueue } from './net-fake-virtqueue.js';

test('net over virtio-pci: bring-up through BAR 0, MSI-X interrupts, frames both ways', () => {
  const memory = GuestMemory.anonymous([{ start: 0, size: 4 << 20 }]);
  const segment = new PciSegment();
  const tap = new FakeTap(TUN_F_CSUM);
  const net = new NetDevice(tap, { mac: '52:54:00:00:00:01', log: () => {} });
  const sink = new RecordingSink();
  const pci = new VirtioPciDevice(net, { memory, interrupts: sink });
  const slot = segment.addDevice(pci);
  const cfg = (reg: number): number => (slot << 15) | reg;
  assert.equal(read(segment.ecam, cfg(2), 2), 0x1041, 'virtio-net is device 0x1041');
  write(segment.ecam, cfg(4), 2, 0x0006);
  const bar = pci.config.barAddress(0) - PCI_MMIO_START;
  const common = (o: number, s: number, v?: number): number => {
    if (v === undefined) return read(segment.mmio, bar + o, s);
    write(segment.mmio, bar + o, s, v);
    return v;
  };
  // MSI-X on, vectors 0 (config), 1 (rx), 2 (tx), all unmasked.
  let msix = read(segment.ecam, cfg(0x34), 1);
  while (read(segment.ecam, cfg(msix), 1) !== 0x11) msix = read(segment.ecam, cfg(msix + 1), 1);
  write(segment.ecam, cfg(msix + 2), 2, 0x8000);
  for (let v = 0; v < 3; v++) {
    write(segment.mmio, bar + 0x4000 + 16 * v, 4, 0xfee0_0000);
    write(segment.mmio, bar + 0x4000 + 16 * v + 8, 4, 0x30 + v);
    write(segment.mmio, bar + 0x4000 + 16 * v + 12, 4, 0);
  }
  common(0x14, 1, 0);
  common(0x14, 1, 1);
  common(0x14, 1, 3);
  common(0x00, 4, 0);
  const offered = common(0x04, 4);
  assert.ok((offered & (1 << 15)) !== 0, 'MRG_RXBUF offered');
  common(0x08, 4, 0);
  common(0x0c, 4, (1 << 5) | (1 << 15) | (1 << 16)); // MAC, MRG_RXBUF, STATUS
  common(0x08, 4, 1);
  common(0x0c, 4, 1); // VERSION_1
  common(0x14, 1, 11);
  assert.equal(common(0x14, 1), 11);
  common(0x10, 2, 0);
  const queues = [new FakeVirtqueue(memory, 256, 0x10000, 0x100000), new FakeVirtqueue(memory, 256, 0x20000, 0x200000)];
  queues.forEach((q, i) => {
    common(0x16, 2, i);
    common(0x18, 2, 256);
    common(0x1a, 2, i + 1);
    common(0x20, 4, q.descAddr);
    common(0x28, 4, q.availAddr);
    common(0x30, 4, q.usedAddr);
    common(0x1c, 2, 1);
  });
  common(0x14, 1, 15);
  assert.equal(common(0x14, 1), 15);
  const mac = [0, 1, 2, 3, 4, 5].map((i) => read(segment.mmio, bar + 0x2000 + i, 1));
  assert.deepEqual(mac, [0x52, 0x54, 0, 0, 0, 1]);

  // tx: the driver posts a frame and kicks queue 1 through its notify address.
  const frame = new Uint8Array(NET_HEADER_SIZE + 60).fill(0xa5, NET_HEADER_SIZE);
  queues[1]!.postReadable(frame);
  const [, txNotify] = pci.notifyAddresses();
  write(segment.mmio, txNotify! - PCI_MMIO_START, 2, 1);
  assert.deepEqual(tap.outbound, [frame]);
  assert.deepEqual(sink.messages.at(-1), { address: 0xfee0_0000n, data: 0x32 });

  // rx: a frame from the tap lands in a posted buffer and raises vector 1.
  const { addr } = queues[0]!.postWritable(2048);
  tap.inject(new Uint8Array(NET_HEADER_SIZE + 42).fill(7, NET_HEADER_SIZE));
  assert.deepEqual(queues[0]!.takeUsed().map((u) => u.len), [NET_HEADER_SIZE + 42]);
  assert.equal(memory.readU8(addr + NET_HEADER_SIZE), 7);
  assert.equal(memory.readU16LE(addr + 10), 1, 'num_buffers');
  assert.deepEqual(sink.messages.at(-1), { address: 0xfee0_0000n, data: 0x31 });
  assert.deepEqual(sink.levels, []);
});
