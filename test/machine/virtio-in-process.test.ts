// virtio devices inside novm's own VMM, driven by a freestanding test guest on real KVM
// (test/guests/virtio): virtio-rng and virtio-blk over virtio-pci (ECAM discovery, capability
// walk, MSI-X, a moved BAR) and over virtio-mmio (IOAPIC pins), kicks through ioeventfds.
// Everything the guest reports is compared with what the host saw: the image file's bytes,
// the device's counters, the interrupts sent and the kicks that arrived through eventfds.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it, type TestContext } from 'node:test';
import { loadKernel } from '../../src/boot/load-kernel.js';
import { Bus } from '../../src/bus/bus.js';
import type { KvmVm } from '../../src/kvm/vm.js';
import type { MachineExit } from '../../src/machine/machine-exit.js';
import { Machine, type DeviceContext } from '../../src/machine/machine.js';
import { attachPcPlatform, pcPlatformLayout } from '../../src/machine/pc-platform.js';
import { VIRTIO_MMIO_FIRST_GSI, VirtioWiring, type AttachedVirtioMmio, type AttachedVirtioPci } from '../../src/machine/virtio-attach.js';
import { MiB } from '../../src/memory/address.js';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { ramLayout } from '../../src/memory/layout.js';
import { PciSegment } from '../../src/pci/segment.js';
import type { VirtioDeviceModel } from '../../src/virtio/device.js';
import { BlkDevice } from '../../src/virtio/devices/blk/blk-device.js';
import { FileBlockBackend, MemoryBlockBackend } from '../../src/virtio/devices/blk/block-backend.js';
import { RngDevice } from '../../src/virtio/devices/rng/rng-device.js';
import { buildGuest, fnv1a32 } from '../guests/build.js';
import { patternByte, VIRTIO_GUEST } from '../guests/virtio/guest.js';

const skip = existsSync('/dev/kvm') ? false : 'needs /dev/kvm';
const work = mkdtempSync(join(tmpdir(), 'novm-virtio-kvm-'));
after(() => rmSync(work, { recursive: true, force: true }));

const MEMORY = 32 * MiB;
const SECTOR = 512;
const SECTORS = 64;
const RUN_TIMEOUT_MS = 90_000;
/** IOAPIC pins for the INTx variant (any free pins; the guest reads them from Interrupt Line). */
const INTX_GSIS = [20, 21] as const;

/** Delegates to a device model and counts the notifications that reach it, by any path. */
function countingNotify(device: VirtioDeviceModel): { model: VirtioDeviceModel; notifies: number[] } {
  const notifies = new Array<number>(device.queueMaxSizes.length).fill(0);
  const model: VirtioDeviceModel = {
    deviceType: device.deviceType,
    queueMaxSizes: device.queueMaxSizes,
    deviceFeatures: device.deviceFeatures,
    configSize: device.configSize,
    readConfig: (offset, data) => device.readConfig(offset, data),
    writeConfig: (offset, data) => device.writeConfig(offset, data),
    activate: (context) => device.activate(context),
    notify: (q) => {
      notifies[q] = (notifies[q] ?? 0) + 1;
      device.notify(q);
    },
    reset: () => device.reset(),
  };
  return { model, notifies };
}

interface GuestReport {
  kicks: number;
  irqs: number;
  bytes: number;
}

function parseInfo(serial: string, transport: string, device: string): GuestReport {
  const match = new RegExp(`^INFO ${transport} ${device} kicks=(\\d+) irqs=(\\d+) bytes=(\\d+)$`, 'm').exec(serial);
  assert.ok(match, `no INFO line for ${transport} ${device}:\n${serial}`);
  return { kicks: Number(match[1]), irqs: Number(match[2]), bytes: Number(match[3]) };
}

interface Run {
  exit: MachineExit;
  serial: string;
  image: Uint8Array;
  original: Uint8Array;
  rng: RngDevice;
  blk: BlkDevice;
  rngNotifies: number[];
  blkNotifies: number[];
  rngAttached: AttachedVirtioPci | AttachedVirtioMmio;
  blkAttached: AttachedVirtioPci | AttachedVirtioMmio;
  elapsedMs: number;
  /** What the wiring logged (failed ioeventfd deassignments, poller errors): must stay empty. */
  hostLog: string[];
  /** Accesses that left KVM for novm's main thread (UART bytes, config and register accesses). */
  exits: number;
  wsector: number;
  seed: number;
}

async function runGuest(transport: 'pci' | 'mmio', options: { seed: number; wsector: number; wrongSum?: boolean; intx?: boolean }): Promise<Run> {
  const imagePath = join(work, `${transport}-${options.seed}.img`);
  const original = new Uint8Array(randomBytes(SECTORS * SECTOR));
  writeFileSync(imagePath, original);
  const sum0 = (fnv1a32(original.subarray(0, SECTOR)) ^ (options.wrongSum === true ? 1 : 0)) >>> 0;
  const cmdline = [`transport=${transport}`, `mmio_gsi=${VIRTIO_MMIO_FIRST_GSI}`, `sectors=${SECTORS}`, `sum0=0x${sum0.toString(16)}`,
    `wsector=${options.wsector}`, `seed=${options.seed}`, 'move_bar=1', ...(options.intx === true ? ['pci_irq=intx'] : [])].join(' ');
  const layout = pcPlatformLayout(1);
  const plan = await loadKernel({ kernelPath: buildGuest(VIRTIO_GUEST), cmdline, ram: ramLayout(MEMORY), reserved: layout.reserved });
  const rng = new RngDevice();
  const backend = new FileBlockBackend(imagePath, false);
  const blk = new BlkDevice(backend);
  const rngCounted = countingNotify(rng);
  const blkCounted = countingNotify(blk);
  let serial = '';
  const hostLog: string[] = [];
  let rngAttached: AttachedVirtioPci | AttachedVirtioMmio | undefined;
  let blkAttached: AttachedVirtioPci | AttachedVirtioMmio | undefined;
  let wiring: VirtioWiring | undefined;
  const machine = Machine.create({
    cpus: 1,
    memoryBytes: MEMORY,
    boot: plan,
    extraSegments: [{ address: layout.acpi.base, bytes: layout.acpi.blob }],
    localDevices: layout.localDevices,
    attachDevices: (ctx) => {
      const platform = attachPcPlatform(ctx, layout, { serialOutput: (byte) => { serial += String.fromCharCode(byte); } });
      wiring = new VirtioWiring(ctx, (line) => hostLog.push(line));
      if (transport === 'pci') {
        rngAttached = wiring.attachPci(platform.pci, rngCounted.model, options.intx === true ? { intxGsi: INTX_GSIS[0] } : {});
        blkAttached = wiring.attachPci(platform.pci, blkCounted.model, options.intx === true ? { intxGsi: INTX_GSIS[1] } : {});
      } else {
        rngAttached = wiring.attachMmio(0, rngCounted.model);
        blkAttached = wiring.attachMmio(1, blkCounted.model);
      }
      return () => void wiring?.close();
    },
  });
  const started = performance.now();
  machine.start();
  const timer = setTimeout(() => void machine.stop('test timeout'), RUN_TIMEOUT_MS);
  const exit = await machine.exited;
  clearTimeout(timer);
  const elapsedMs = performance.now() - started;
  const exits = machine.mailboxAccesses;
  await wiring?.close();
  backend.close();
  assert.ok(rngAttached && blkAttached);
  return {
    exit, serial, image: new Uint8Array(readFileSync(imagePath)), original, rng, blk,
    rngNotifies: rngCounted.notifies, blkNotifies: blkCounted.notifies, rngAttached, blkAttached, elapsedMs, exits, hostLog,
    wsector: options.wsector, seed: options.seed,
  };
}

const EXPECTED_PASSES = ['rng-bring-up', 'rng-length', 'rng-nonzero', 'rng-differ', 'rng-interrupts', 'blk-bring-up', 'blk-capacity',
  'blk-read-status', 'blk-read-sector0', 'blk-write-status', 'blk-readback-status', 'blk-readback', 'blk-interrupts', 'no-unexpected-interrupts'];

function checkRun(t: TestContext, transport: 'pci' | 'mmio', run: Run): void {
  t.diagnostic(`${transport}: guest run took ${run.elapsedMs.toFixed(0)} ms, ${run.exits} accesses forwarded to the main thread`);
  assert.equal(run.exit.kind, 'debug-exit', `${run.exit.detail}\n${run.serial}`);
  assert.ok(!run.serial.includes('FAIL'), run.serial);
  assert.ok(run.serial.includes('DONE\n'), run.serial);
  for (const what of [...EXPECTED_PASSES, `${transport}-devices-found`]) assert.ok(run.serial.includes(`PASS ${what}\n`), `PASS ${what} missing:\n${run.serial}`);
  assert.equal(run.exit.status, 0);
  assert.deepEqual(run.hostLog, [], 'every ioeventfd was assigned and deassigned cleanly');

  // rng: two 16-byte requests, each kicked once, each answered with one interrupt.
  const rng = parseInfo(run.serial, transport, 'rng');
  assert.deepEqual(rng, { kicks: 2, irqs: 2, bytes: 32 });
  assert.equal(run.rng.bytesServed, rng.bytes, 'bytes the device served = bytes the guest saw');
  const sent = (a: AttachedVirtioPci | AttachedVirtioMmio): number => a.stats.interrupts + a.stats.intxChanges / 2;
  assert.equal(sent(run.rngAttached), rng.irqs, 'interrupts the host sent = interrupts the guest took');
  // Every kick reached the device, and every one of them through the ioeventfd (none as an exit).
  assert.deepEqual(run.rngNotifies, [rng.kicks]);
  assert.deepEqual(run.rngAttached.stats.ioeventfdKicks, [rng.kicks]);

  // blk: read sector 0 (512 + status), write (status), read back (512 + status).
  const blk = parseInfo(run.serial, transport, 'blk');
  assert.deepEqual(blk, { kicks: 3, irqs: 3, bytes: 3 * 1 + 2 * SECTOR });
  assert.equal(run.blk.stats.requests, 3);
  assert.equal(run.blk.stats.errors, 0);
  assert.equal(sent(run.blkAttached), blk.irqs);
  assert.deepEqual(run.blkNotifies, [blk.kicks]);
  assert.deepEqual(run.blkAttached.stats.ioeventfdKicks, [blk.kicks]);

  // The image: the written sector holds the guest's pattern, every other byte is untouched.
  const expected = new Uint8Array(run.original);
  for (let i = 0; i < SECTOR; i++) expected[run.wsector * SECTOR + i] = patternByte(run.seed, i);
  assert.notDeepEqual(run.original.subarray(run.wsector * SECTOR, (run.wsector + 1) * SECTOR), expected.subarray(run.wsector * SECTOR, (run.wsector + 1) * SECTOR));
  assert.deepEqual(run.image, expected);
}

describe('virtio devices in novm\'s VMM, driven by a test guest', { skip }, () => {
  it('virtio-pci: rng and blk with MSI-X, kicks through ioeventfds that follow a moved BAR', { timeout: RUN_TIMEOUT_MS + 30_000 }, async (t) => {
    const run = await runGuest('pci', { seed: 0x5a, wsector: 7 });
    checkRun(t, 'pci', run);
    const rng = run.rngAttached as AttachedVirtioPci;
    const blk = run.blkAttached as AttachedVirtioPci;
    // The guest moved the rng's BAR 0 to 0xC0800000 + (slot << 16): its notify address is there now.
    assert.deepEqual(rng.transport.notifyAddresses(), [0xc080_0000 + rng.slot * 0x1_0000 + 0x3000]);
    assert.ok(run.serial.includes('PASS pci-bar-moved\n'), run.serial);
    assert.equal(rng.transport.msix.enabled, true);
    assert.equal(blk.transport.msix.enabled, true);
    assert.equal(rng.stats.msiErrors + blk.stats.msiErrors, 0);
    assert.equal(rng.stats.intxChanges + blk.stats.intxChanges, 0, 'with MSI-X on, INTx never moved');
  });

  it('virtio-pci with MSI-X off: level-triggered INTx on IOAPIC pins, deasserted by the guest reading ISR', { timeout: RUN_TIMEOUT_MS + 30_000 }, async (t) => {
    const run = await runGuest('pci', { seed: 0x17, wsector: 9, intx: true });
    checkRun(t, 'pci', run);
    const rng = run.rngAttached as AttachedVirtioPci;
    const blk = run.blkAttached as AttachedVirtioPci;
    assert.ok(run.serial.includes('PASS pci-intx-line\n'), run.serial);
    assert.equal(rng.transport.msix.enabled || blk.transport.msix.enabled, false);
    // Each request raised the line once and the guest's ISR read lowered it once: no MSI sent.
    assert.deepEqual([rng.stats.interrupts, rng.stats.intxChanges, blk.stats.interrupts, blk.stats.intxChanges], [0, 2 * 2, 0, 2 * 3]);
    t.diagnostic(`level interrupts with ISR 0 (delivered again by this host's KVM): ${/intx-not-mine=(\d+)/.exec(run.serial)?.[1] ?? '?'}`);
  });

  it('virtio-mmio: rng and blk on IOAPIC pins, kicks through datamatch ioeventfds', { timeout: RUN_TIMEOUT_MS + 30_000 }, async (t) => {
    const run = await runGuest('mmio', { seed: 0xc3, wsector: 42 });
    checkRun(t, 'mmio', run);
    const rng = run.rngAttached as AttachedVirtioMmio;
    const blk = run.blkAttached as AttachedVirtioMmio;
    assert.deepEqual([rng.base, rng.gsi, blk.base, blk.gsi], [0xd000_0000, VIRTIO_MMIO_FIRST_GSI, 0xd000_1000, VIRTIO_MMIO_FIRST_GSI + 1]);
  });

  it('the guest\'s checks can fail: a wrong sector-0 checksum is reported and the exit status is 1', { timeout: RUN_TIMEOUT_MS + 30_000 }, async () => {
    const run = await runGuest('mmio', { seed: 1, wsector: 3, wrongSum: true });
    assert.equal(run.exit.kind, 'debug-exit', run.serial);
    assert.ok(run.serial.includes('FAIL blk-read-sector0'), run.serial);
    assert.ok(run.serial.includes('PASS blk-readback\n'), run.serial);
    assert.equal(run.exit.status, 1);
  });
});

describe('VirtioWiring bookkeeping (a fake VM records the ioeventfd calls)', () => {
  interface IoeventfdCall { fd: number; address: number; length: number; datamatch: bigint | undefined; deassign: boolean }
  function fakeContext(calls: IoeventfdCall[]): DeviceContext {
    const vm = {
      ioeventfd(fd: number, address: number, length: number, options: { datamatch?: bigint; deassign?: boolean } = {}) {
        calls.push({ fd, address, length, datamatch: options.datamatch, deassign: options.deassign === true });
      },
      signalMsi() {},
      irqLine() {},
    } as unknown as KvmVm;
    return {
      vm, memory: GuestMemory.anonymous([{ start: 0, size: 1 * MiB }]), pio: new Bus(), mmio: new Bus(),
      irqLine: () => ({ setLevel() {}, trigger() {} }),
      end() {},
    };
  }
  /** The registrations left after replaying the calls; throws if a deassign matches nothing. */
  function active(calls: readonly IoeventfdCall[]): string[] {
    const live = new Set<string>();
    for (const c of calls) {
      const key = `${c.fd}@0x${c.address.toString(16)}/${c.length}/${String(c.datamatch)}`;
      if (c.deassign) assert.ok(live.delete(key), `deassign of ${key}, which is not assigned`);
      else live.add(key);
    }
    return [...live].map((k) => k.slice(k.indexOf('@') + 1)).sort();
  }
  const u16 = (v: number): Uint8Array => new Uint8Array([v & 0xff, v >> 8]);
  const u32 = (v: number): Uint8Array => new Uint8Array([v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24]);

  it('PCI notify ioeventfds appear with Command.MEM, follow BAR 0 moves, go when decoding stops and at close', async () => {
    const calls: IoeventfdCall[] = [];
    const segment = new PciSegment();
    const wiring = new VirtioWiring(fakeContext(calls), (line) => assert.fail(line));
    try {
      const blk = wiring.attachPci(segment, new BlkDevice(new MemoryBlockBackend(64 * SECTOR), { queues: 2 }));
      assert.deepEqual(active(calls), [], 'nothing while memory decoding is off');
      const bar = segment.mapping(blk.slot, 0);
      assert.equal(bar, undefined);
      segment.configWrite(blk.slot, 0, 0x04, u16(0x6));
      const base = segment.mapping(blk.slot, 0)!.address;
      assert.deepEqual(active(calls), [`0x${(base + 0x3000).toString(16)}/2/undefined`, `0x${(base + 0x3004).toString(16)}/2/undefined`]);
      segment.configWrite(blk.slot, 0, 0x04, u16(0));
      assert.deepEqual(active(calls), []);
      segment.configWrite(blk.slot, 0, 0x10, u32(0xc010_0000));
      segment.configWrite(blk.slot, 0, 0x04, u16(0x6));
      assert.deepEqual(active(calls), ['0xc0103000/2/undefined', '0xc0103004/2/undefined']);
      // A BAR outside the window is not decoded: the ioeventfds go with it.
      segment.configWrite(blk.slot, 0, 0x10, u32(0x1000_0000));
      assert.deepEqual(active(calls), []);
    } finally {
      await wiring.close();
    }
    assert.deepEqual(active(calls), []);
  });

  it('virtio-mmio: one datamatch ioeventfd per queue on QueueNotify, dropped at close; GSIs beyond the IOAPIC are refused', async () => {
    const calls: IoeventfdCall[] = [];
    const wiring = new VirtioWiring(fakeContext(calls), (line) => assert.fail(line));
    try {
      const blk = wiring.attachMmio(3, new BlkDevice(new MemoryBlockBackend(64 * SECTOR), { queues: 2 }));
      assert.deepEqual([blk.base, blk.gsi], [0xd000_3000, VIRTIO_MMIO_FIRST_GSI + 3]);
      assert.deepEqual(active(calls), ['0xd0003050/4/0', '0xd0003050/4/1']);
      assert.throws(() => wiring.attachMmio(8, new RngDevice()), { name: 'VirtioAttachError' });
      assert.equal(wiring.attachMmio(8, new RngDevice(), { gsi: 10 }).gsi, 10);
    } finally {
      await wiring.close();
    }
    assert.deepEqual(active(calls), []);
    assert.throws(() => wiring.attachMmio(9, new RngDevice(), { gsi: 11 }), /closed/);
  });
});
