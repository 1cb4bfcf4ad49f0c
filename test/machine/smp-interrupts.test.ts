// SMP and interrupt delivery on real KVM, checked from inside test guests: every AP started by
// the guest through its LAPIC (INIT/SIPI) with the right APIC id; IOAPIC interrupts raised by
// KVM_IRQ_LINE and by an irqfd, an MSI, and ioeventfd writes that never exit to novm.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import type { BusDevice } from '../../src/bus/bus-device.js';
import { Machine } from '../../src/machine/machine.js';
import { MiB } from '../../src/memory/address.js';
import * as libc from '../../src/native/libc.js';
import { flatGuestPlan } from '../guests/core/assemble.js';

const skip = existsSync('/dev/kvm') ? false : 'needs /dev/kvm';

function serialCapture(): { device: BusDevice; text: () => string } {
  let out = '';
  return { text: () => out, device: { read(_o, d) { d.fill(0); }, write(o, d) { if (o === 0) out += String.fromCharCode(d[0]!); } } };
}

async function runToExit(machine: Machine, timeoutMs = 30_000): Promise<Awaited<Machine['exited']>> {
  machine.start();
  const timer = setTimeout(() => void machine.stop('test timeout'), timeoutMs);
  const exit = await machine.exited;
  clearTimeout(timer);
  return exit;
}

for (const cpus of [1, 2, 4, 8]) {
  test(`all ${cpus} vCPUs come up with their APIC ids`, { skip }, async () => {
    const serial = serialCapture();
    const machine = Machine.create({ cpus, memoryBytes: 32 * MiB, boot: flatGuestPlan('smp', { rcx: cpus }), attachDevices: (ctx) => ctx.pio.insert(0x3f8, 8, serial.device) });
    const exit = await runToExit(machine);
    assert.equal(serial.text(), 'PASS all vCPUs came up\n');
    assert.deepEqual([exit.kind, exit.status], ['debug-exit', 0]);
  });
}

test('interrupts arrive through the IOAPIC (KVM_IRQ_LINE, irqfd), as MSIs, and ioeventfd writes skip novm', { skip }, async () => {
  const serial = serialCapture();
  const irqfd = libc.check('eventfd', libc.eventfd(0, libc.EFD_CLOEXEC));
  const ioeventfd = libc.check('eventfd', libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK));
  const doorbells: number[] = [];
  const machine = Machine.create({
    cpus: 1, memoryBytes: 32 * MiB, boot: flatGuestPlan('interrupts'),
    attachDevices: (ctx) => {
      ctx.pio.insert(0x3f8, 8, serial.device);
      ctx.vm.irqfd(irqfd, 6);
      ctx.vm.ioeventfd(ioeventfd, 0xd000_1000, 4);
      const one = new Uint8Array(8);
      one[0] = 1;
      ctx.pio.insert(0x520, 1, {
        read(_o, d) { d.fill(0); },
        write(_o, d) {
          doorbells.push(d[0]!);
          if (d[0] === 5) ctx.irqLine(5).trigger();
          else if (d[0] === 6) libc.write(irqfd, one, 8);
          else if (d[0] === 7) ctx.vm.signalMsi(0xfee0_0000n, 0x32);
        },
      });
    },
  });
  const exit = await runToExit(machine);
  const text = serial.text();
  assert.equal(text, 'PASS IOAPIC interrupt from KVM_IRQ_LINE\nPASS IOAPIC interrupt from an irqfd\nPASS MSI\nPASS ioeventfd writes done\n');
  assert.deepEqual([exit.kind, exit.status], ['debug-exit', 0]);
  assert.deepEqual(doorbells, [5, 6, 7]);
  const counter = new Uint8Array(8);
  assert.equal(libc.read(ioeventfd, counter, 8), 8);
  assert.equal(new DataView(counter.buffer).getBigUint64(0, true), 100n, 'every ioeventfd write signalled the eventfd');
  // Only the UART bytes and the three doorbells reached novm: no ioeventfd write became an exit.
  assert.equal(machine.mailboxAccesses, text.length + 3);
  libc.close(irqfd);
  libc.close(ioeventfd);
});

test('the in-kernel PIT interrupts on IOAPIC pin 2, matching the MADT override IRQ 0 -> GSI 2', { skip }, async () => {
  const serial = serialCapture();
  const machine = Machine.create({ cpus: 1, memoryBytes: 32 * MiB, boot: flatGuestPlan('pit-timer'), attachDevices: (ctx) => ctx.pio.insert(0x3f8, 8, serial.device) });
  const exit = await runToExit(machine);
  assert.equal(serial.text(), 'PASS PIT ticks arrive on IOAPIC pin 2\n');
  assert.deepEqual([exit.kind, exit.status], ['debug-exit', 0]);
});
