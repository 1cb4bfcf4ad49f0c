// The machine core on real KVM with tiny guests: exits reach devices, the VM ends the way the
// guest says, and the host can always stop it (a guest spinning in kernel mode, a vCPU halted
// forever) and pause/resume it.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { Machine } from '../../src/machine/machine.js';
import { MiB } from '../../src/memory/address.js';
import { flatGuestPlan } from '../guests/core/assemble.js';

const skip = existsSync('/dev/kvm') ? false : 'needs /dev/kvm';

function capture(): { text: () => string; device: { read(o: number, d: Uint8Array): void; write(o: number, d: Uint8Array): void } } {
  let out = '';
  return {
    text: () => out,
    device: {
      read(_o, d) { d.fill(0); },
      write(o, d) { if (o === 0) out += String.fromCharCode(d[0]!); },
    },
  };
}

test('a guest writes to a main-thread device and ends through the debug-exit port', { skip }, async () => {
  const serial = capture();
  const machine = Machine.create({ cpus: 1, memoryBytes: 32 * MiB, boot: flatGuestPlan('hello'), attachDevices: (ctx) => ctx.pio.insert(0x3f8, 8, serial.device) });
  machine.start();
  const exit = await machine.exited;
  assert.equal(exit.kind, 'debug-exit');
  assert.equal(exit.status, 42);
  assert.equal(serial.text(), 'Hello from a novm guest\n');
  assert.equal(machine.mailboxAccesses, 'Hello from a novm guest\n'.length);
});

test('port and MMIO exits are counted exactly by devices local to the vCPU thread', { skip }, async () => {
  const machine = Machine.create({
    cpus: 1, memoryBytes: 32 * MiB, boot: flatGuestPlan('exit-loop', { rcx: 1000, rbx: 700 }),
    localDevices: [{ kind: 'sink', space: 'pio', base: 0x510, size: 1 }, { kind: 'sink', space: 'mmio', base: 0xd000_0000, size: 0x1000 }],
  });
  machine.start();
  const exit = await machine.exited;
  assert.equal(exit.kind, 'debug-exit');
  assert.equal(machine.vcpuStats[0]!.sinkWrites, 1700);
});

test('a guest spinning in kernel mode is stopped cleanly, after a pause and a resume', { skip }, async () => {
  const machine = Machine.create({ cpus: 2, memoryBytes: 32 * MiB, boot: flatGuestPlan('spin') });
  machine.start();
  await new Promise((r) => setTimeout(r, 200));
  await machine.pause();
  machine.resume();
  await new Promise((r) => setTimeout(r, 100));
  const started = Date.now();
  const exit = await machine.stop('test is done');
  assert.equal(exit.kind, 'quit');
  assert.ok(Date.now() - started < 3000, 'stop took too long');
});

test('a vCPU halted forever with interrupts off does not keep the VM from stopping', { skip }, async () => {
  const machine = Machine.create({ cpus: 1, memoryBytes: 32 * MiB, boot: flatGuestPlan('halt-forever') });
  machine.start();
  await new Promise((r) => setTimeout(r, 200));
  const exit = await machine.stop();
  assert.equal(exit.kind, 'quit');
});

test('a triple fault ends the VM with the failing vCPU state', { skip }, async () => {
  const machine = Machine.create({ cpus: 1, memoryBytes: 32 * MiB, boot: flatGuestPlan('triple-fault') });
  machine.start();
  const exit = await machine.exited;
  assert.equal(exit.kind, 'triple-fault');
  assert.match(exit.state, /rip=0x/);
});

test('impossible CPU counts and memory sizes are refused before anything is created', () => {
  assert.throws(() => Machine.create({ cpus: 0, memoryBytes: 32 * MiB, boot: flatGuestPlan('hello') }), /CPU count/);
  assert.throws(() => Machine.create({ cpus: 1, memoryBytes: 1 * MiB, boot: flatGuestPlan('hello') }), /memory size/);
});
