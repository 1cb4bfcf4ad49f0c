// ACPI PM registers: the sequences Linux's ACPICA performs (enable the power button event,
// handle the SCI, power off through SLP_TYP/SLP_EN) and the PM timer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AcpiPm, AcpiPmStateError, PM_TIMER_HZ } from '../../src/platform/index.js';
import { FakeIrq } from './fake-irq.js';

function make(): { pm: AcpiPm; sci: FakeIrq; clock: { now: number }; sleeps: number[]; offs: number[] } {
  const sci = new FakeIrq();
  const clock = { now: 1000 };
  const sleeps: number[] = [];
  const offs: number[] = [];
  const pm = new AcpiPm({ sci, clock: () => clock.now, onSleep: (t) => sleeps.push(t), onPowerOff: () => offs.push(1) });
  return { pm, sci, clock, sleeps, offs };
}
const r16 = (dev: { read(o: number, d: Uint8Array): void }, offset: number): number => {
  const d = new Uint8Array(2);
  dev.read(offset, d);
  return d[0]! | (d[1]! << 8);
};
const w16 = (dev: { write(o: number, d: Uint8Array): void }, offset: number, value: number): void => dev.write(offset, Uint8Array.of(value & 0xff, value >> 8));
const r32 = (dev: { read(o: number, d: Uint8Array): void }): number => {
  const d = new Uint8Array(4);
  dev.read(0, d);
  return new DataView(d.buffer).getUint32(0, true);
};

test('SCI_EN is set from reset (no SMI_CMD: always in ACPI mode)', () => {
  const { pm } = make();
  assert.equal(r16(pm.controlBlock, 0) & 1, 1);
});

test('power button: status, enable, SCI level, write-1-to-clear', () => {
  const { pm, sci } = make();
  pm.pressPowerButton();
  assert.equal(sci.level, false, 'event not enabled yet');
  assert.equal(r16(pm.eventBlock, 0) & 0x100, 0x100);
  w16(pm.eventBlock, 2, 0x100); // PWRBTN_EN
  assert.equal(pm.powerButtonEnabled, true);
  assert.equal(sci.level, true);
  w16(pm.eventBlock, 0, 0x0001); // clearing another bit leaves PWRBTN_STS
  assert.equal(sci.level, true);
  w16(pm.eventBlock, 0, 0x0100);
  assert.equal(sci.level, false);
  assert.equal(r16(pm.eventBlock, 0) & 0x100, 0);
  assert.equal(r16(pm.eventBlock, 2), 0x100);
});

test('SCI is gated by SCI_EN', () => {
  const { pm, sci } = make();
  w16(pm.eventBlock, 2, 0x100);
  w16(pm.controlBlock, 0, 0);
  pm.pressPowerButton();
  assert.equal(sci.level, false);
  w16(pm.controlBlock, 0, 1);
  assert.equal(sci.level, true);
});

test('ACPICA sleep sequence: SLP_TYP first, then SLP_EN; S5 powers off', () => {
  const { pm, sleeps, offs } = make();
  const base = r16(pm.controlBlock, 0) & ~(7 << 10);
  w16(pm.controlBlock, 0, base | (5 << 10)); // write #1: SLP_TYP only
  assert.deepEqual(sleeps, []);
  w16(pm.controlBlock, 0, base | (5 << 10) | (1 << 13)); // write #2: with SLP_EN
  assert.deepEqual(sleeps, [5]);
  assert.deepEqual(offs, [1]);
  assert.equal(r16(pm.controlBlock, 0) & (1 << 13), 0, 'SLP_EN reads as 0');
});

test('other sleep states are reported but do not power off', () => {
  const { pm, sleeps, offs } = make();
  w16(pm.controlBlock, 0, 1 | (1 << 10) | (1 << 13));
  assert.deepEqual(sleeps, [1]);
  assert.deepEqual(offs, []);
});

test('PM timer counts at 3.579545 MHz from the injected clock and wraps at 32 bits', () => {
  const { pm, clock } = make();
  const t0 = r32(pm.timer);
  clock.now += 1000;
  const t1 = r32(pm.timer);
  assert.equal((t1 - t0 + 2 ** 32) % 2 ** 32, PM_TIMER_HZ);
  clock.now += 0.001; // 1 µs = 3.58 ticks
  assert.ok(((r32(pm.timer) - t1 + 2 ** 32) % 2 ** 32) >= 3);
  clock.now = (2 ** 32 / PM_TIMER_HZ) * 1000 * 3 + 0.5; // three wraps later
  assert.ok(r32(pm.timer) < PM_TIMER_HZ);
  // Byte reads return the same value's bytes.
  const d = new Uint8Array(1);
  pm.timer.read(3, d);
  assert.equal(d[0], r32(pm.timer) >>> 24);
});

test('TMR_STS sets on MSB toggles and raises the SCI when TMR_EN', () => {
  const { pm, sci, clock } = make();
  w16(pm.eventBlock, 0, 0xffff);
  w16(pm.eventBlock, 2, 0x0001);
  const at = pm.nextEventAt()!;
  assert.ok(at > clock.now);
  clock.now = at + 0.001;
  assert.equal(pm.poll(), true);
  assert.equal(sci.level, true);
  assert.equal(r16(pm.eventBlock, 0) & 1, 1);
});

test('state round-trip re-raises a pending SCI; bad state refused', () => {
  const { pm, clock } = make();
  w16(pm.eventBlock, 2, 0x100);
  pm.pressPowerButton();
  const state = JSON.parse(JSON.stringify(pm.state()));
  const sci = new FakeIrq();
  AcpiPm.fromState(state, { sci, clock: () => clock.now, onPowerOff: () => {} });
  assert.equal(sci.level, true);
  assert.throws(() => AcpiPm.fromState({ ...state, control: 1 << 13 }, { sci, clock: () => 0, onPowerOff: () => {} }), AcpiPmStateError);
});

test('out-of-range offsets and timer writes are ignored', () => {
  const { pm } = make();
  pm.eventBlock.write(7, Uint8Array.of(0xff));
  pm.timer.write(0, Uint8Array.of(1, 2, 3, 4));
  const d = new Uint8Array(2);
  pm.controlBlock.read(1, d);
  assert.equal(d[1], 0xff);
  assert.equal(pm.ignoredAccesses, 2);
});
