// i8042: reset paths, the commands Linux's i8042 driver issues at probe, absent devices.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { I8042 } from '../../src/platform/index.js';
import { FakeIrq } from './fake-irq.js';

function make(): { kbc: I8042; resets: number[]; kbd: FakeIrq; aux: FakeIrq } {
  const resets: number[] = [];
  const kbd = new FakeIrq();
  const aux = new FakeIrq();
  const kbc = new I8042({ onReset: () => resets.push(1), keyboardIrq: kbd, auxIrq: aux });
  return { kbc, resets, kbd, aux };
}
const inb = (dev: { read(o: number, d: Uint8Array): void }, offset = 0): number => {
  const d = new Uint8Array(1);
  dev.read(offset, d);
  return d[0]!;
};
const outb = (dev: { write(o: number, d: Uint8Array): void }, value: number, offset = 0): void => dev.write(offset, Uint8Array.of(value));

/** Linux's i8042_command: write command (+ params), read results when OBF is set. */
function command(kbc: I8042, cmd: number, params: number[] = [], results = 0): number[] {
  outb(kbc.commandPort, cmd);
  for (const p of params) outb(kbc.dataPort, p);
  const out: number[] = [];
  for (let i = 0; i < results; i++) {
    assert.equal(inb(kbc.commandPort) & 0x01, 1, `command 0x${cmd.toString(16)}: result ${i} ready`);
    out.push(inb(kbc.dataPort));
  }
  return out;
}

test('command 0xFE on port 0x64 resets the machine (Linux reboot=k, ACPI reset register)', () => {
  const { kbc, resets } = make();
  outb(kbc, 0xfe, 4);
  assert.deepEqual(resets, [1]);
  outb(kbc, 0xff, 4); // pulses no line: no reset
  assert.deepEqual(resets, [1]);
});

test('writing the output port with bit 0 clear resets; A20 is tracked', () => {
  const { kbc, resets } = make();
  assert.equal(kbc.a20Enabled, true);
  command(kbc, 0xd1, [0x01]);
  assert.equal(kbc.a20Enabled, false);
  assert.deepEqual(resets, []);
  command(kbc, 0xd1, [0x02]);
  assert.deepEqual(resets, [1]);
});

test('Linux probe sequence: flush, self-test, CTR read/write, interface tests', () => {
  const { kbc } = make();
  assert.equal(inb(kbc.commandPort) & 0x01, 0, 'nothing to flush');
  assert.deepEqual(command(kbc, 0xaa, [], 1), [0x55]);
  assert.ok(inb(kbc.commandPort) & 0x04, 'SYS flag after self-test');
  const [ctr] = command(kbc, 0x20, [], 1);
  assert.equal(ctr! & 0x40, 0x40, 'translation on');
  command(kbc, 0x60, [(ctr! & ~0x03) | 0x10]);
  assert.deepEqual(command(kbc, 0x20, [], 1), [(ctr! & ~0x03) | 0x10]);
  assert.deepEqual(command(kbc, 0xab, [], 1), [0x00]);
  command(kbc, 0xa8);
  assert.equal(command(kbc, 0x20, [], 1)[0]! & 0x20, 0, 'aux enabled');
  command(kbc, 0xa7);
  assert.equal(command(kbc, 0x20, [], 1)[0]! & 0x20, 0x20, 'aux disabled');
  assert.equal(kbc.unknownCommands, 0);
});

test('AUX loop echoes with the AUX flag and raises IRQ 12 when enabled', () => {
  const { kbc, aux, kbd } = make();
  command(kbc, 0x60, [0x47 | 0x02]);
  outb(kbc.commandPort, 0xd3);
  outb(kbc.dataPort, 0x5a);
  assert.equal(inb(kbc.commandPort) & 0x21, 0x21, 'OBF with AUXDATA');
  assert.equal(aux.level, true);
  assert.equal(kbd.level, false);
  assert.equal(inb(kbc.dataPort), 0x5a);
  assert.equal(aux.level, false);
});

test('bytes for the absent keyboard and mouse come back 0xFE with TIMEOUT, at once', () => {
  const { kbc, kbd } = make();
  outb(kbc.dataPort, 0xf2); // atkbd GETID
  assert.equal(inb(kbc.commandPort) & 0x41, 0x41, 'OBF and TIMEOUT');
  assert.equal(kbd.level, true, 'keyboard IRQ enabled by default');
  assert.equal(inb(kbc.dataPort), 0xfe);
  assert.equal(kbd.level, false);
  command(kbc, 0xd4, [0xff]); // psmouse reset
  assert.equal(inb(kbc.commandPort) & 0x61, 0x61, 'OBF, AUXDATA and TIMEOUT');
  assert.equal(inb(kbc.dataPort), 0xfe);
});

test('a guest that never reads cannot grow the queue past 16 bytes', () => {
  const { kbc } = make();
  for (let i = 0; i < 100; i++) outb(kbc.dataPort, i);
  let n = 0;
  while (inb(kbc.commandPort) & 1) {
    inb(kbc.dataPort);
    n++;
  }
  assert.equal(n, 16);
});
