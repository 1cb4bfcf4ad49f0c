// CMOS RTC: time from an injected clock in BCD/binary and 12/24-hour modes, setting the time
// with SET, UIP timing, update/alarm/periodic flags and IRQ, NMI mask, snapshots.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CmosRtc, RtcStateError } from '../../src/platform/index.js';
import { FakeIrq } from './fake-irq.js';

// 2026-11-21 17:05:09.250 UTC, a Saturday.
const T0 = Date.UTC(2026, 10, 21, 17, 5, 9, 250);

function make(): { rtc: CmosRtc; irq: FakeIrq; clock: { now: number } } {
  const clock = { now: T0 };
  const irq = new FakeIrq();
  const rtc = new CmosRtc({ clock: () => clock.now, irq });
  return { rtc, irq, clock };
}

function cmosRead(rtc: CmosRtc, index: number): number {
  rtc.write(0, Uint8Array.of(index));
  const data = new Uint8Array(1);
  rtc.read(1, data);
  return data[0]!;
}
function cmosWrite(rtc: CmosRtc, index: number, value: number): void {
  rtc.write(0, Uint8Array.of(index));
  rtc.write(1, Uint8Array.of(value));
}

/** What Linux's mc146818_get_time reads, decoded. */
function readTime(rtc: CmosRtc): string {
  const b = cmosRead(rtc, 0x0b);
  const dec = (v: number): number => (b & 0x04 ? v : (v >> 4) * 10 + (v & 15));
  let hours = cmosRead(rtc, 4);
  const pm = !(b & 0x02) && hours & 0x80;
  hours = dec(hours & 0x7f);
  if (!(b & 0x02)) hours = (hours % 12) + (pm ? 12 : 0);
  const year = dec(cmosRead(rtc, 0x32)) * 100 + dec(cmosRead(rtc, 9));
  const pad = (n: number): string => String(n).padStart(2, '0');
  return `${year}-${pad(dec(cmosRead(rtc, 8)))}-${pad(dec(cmosRead(rtc, 7)))} ${pad(hours)}:${pad(dec(cmosRead(rtc, 2)))}:${pad(dec(cmosRead(rtc, 0)))} wd${dec(cmosRead(rtc, 6))}`;
}

test('default mode is BCD, 24-hour, and reads the injected clock', () => {
  const { rtc } = make();
  assert.equal(cmosRead(rtc, 0x0b), 0x02);
  assert.equal(cmosRead(rtc, 0), 0x09);
  assert.equal(cmosRead(rtc, 4), 0x17);
  assert.equal(cmosRead(rtc, 9), 0x26);
  assert.equal(cmosRead(rtc, 0x32), 0x20);
  assert.equal(readTime(rtc), '2026-11-21 17:05:09 wd7');
  assert.equal(cmosRead(rtc, 0x0d), 0x80, 'VRT: time and RAM valid');
});

test('binary and 12-hour modes', () => {
  const { rtc } = make();
  cmosWrite(rtc, 0x0b, 0x04); // binary, 12-hour
  assert.equal(cmosRead(rtc, 0), 9);
  assert.equal(cmosRead(rtc, 4), 0x80 | 5, '5 PM');
  assert.equal(cmosRead(rtc, 9), 26);
  assert.equal(readTime(rtc), '2026-11-21 17:05:09 wd7');
  cmosWrite(rtc, 0x0b, 0x00); // BCD, 12-hour
  assert.equal(cmosRead(rtc, 4), 0x85);
});

test('time advances with the clock; UIP is set only in the last 244 µs of a second', () => {
  const { rtc, clock } = make();
  clock.now = T0 + 61_000;
  assert.equal(readTime(rtc), '2026-11-21 17:06:10 wd7');
  clock.now = Math.floor(T0 / 1000) * 1000 + 999.9;
  assert.equal(cmosRead(rtc, 0x0a) & 0x80, 0x80);
  clock.now = Math.floor(T0 / 1000) * 1000 + 999.7;
  assert.equal(cmosRead(rtc, 0x0a) & 0x80, 0);
  assert.equal(cmosRead(rtc, 0x0a), 0x26, 'divider and rate as a BIOS leaves them');
});

test('setting the time with SET (hwclock --systohc) holds it, then runs from the new value', () => {
  const { rtc, clock } = make();
  cmosWrite(rtc, 0x0b, 0x82); // SET, BCD, 24h
  cmosWrite(rtc, 0, 0x30);
  cmosWrite(rtc, 2, 0x59);
  cmosWrite(rtc, 4, 0x23);
  cmosWrite(rtc, 7, 0x31);
  cmosWrite(rtc, 8, 0x12);
  cmosWrite(rtc, 9, 0x99);
  cmosWrite(rtc, 0x32, 0x19);
  clock.now += 5000;
  assert.equal(cmosRead(rtc, 0), 0x30, 'held while SET');
  assert.equal(cmosRead(rtc, 0x0a) & 0x80, 0, 'no update in progress while SET');
  cmosWrite(rtc, 0x0b, 0x02);
  clock.now += 31_000;
  assert.equal(readTime(rtc), '2000-01-01 00:00:01 wd7');
});

test('garbage time writes are ignored and counted', () => {
  const { rtc } = make();
  cmosWrite(rtc, 8, 0x13); // month 13
  assert.equal(rtc.invalidTimeWrites, 1);
  assert.equal(readTime(rtc), '2026-11-21 17:05:09 wd7');
});

test('update-ended interrupt: flag, IRQ, cleared by reading C; nextEventAt schedules it', () => {
  const { rtc, irq, clock } = make();
  assert.equal(rtc.nextEventAt(), null, 'no interrupt enabled: nothing to schedule');
  cmosWrite(rtc, 0x0b, 0x12); // UIE
  const at = rtc.nextEventAt();
  assert.equal(at, Math.floor(T0 / 1000) * 1000 + 1000);
  clock.now = at!;
  assert.equal(rtc.poll(), true);
  assert.equal(irq.level, true);
  assert.equal(cmosRead(rtc, 0x0c) & 0xb0, 0x90, 'IRQF | UF (PF runs regardless of PIE, as on the MC146818A)');
  assert.equal(irq.level, false);
  assert.equal(cmosRead(rtc, 0x0c), 0);
});

test('alarm interrupt matches with don\'t-care bytes', () => {
  const { rtc, irq, clock } = make();
  cmosWrite(rtc, 1, 0x15); // seconds 15
  cmosWrite(rtc, 3, 0xff); // any minute
  cmosWrite(rtc, 5, 0xc0); // any hour
  cmosWrite(rtc, 0x0b, 0x22); // AIE
  assert.equal(cmosRead(rtc, 1), 0x15);
  clock.now = T0 + 3000; // :12
  rtc.poll();
  assert.equal(irq.level, false);
  clock.now = T0 + 6000; // :15
  rtc.poll();
  assert.equal(irq.level, true);
  assert.equal(cmosRead(rtc, 0x0c) & 0xa0, 0xa0);
});

test('periodic interrupt at the rate in register A', () => {
  const { rtc, irq, clock } = make();
  cmosWrite(rtc, 0x0a, 0x2f); // rate 15: 2 Hz
  cmosWrite(rtc, 0x0b, 0x42); // PIE
  const at = rtc.nextEventAt()!;
  assert.ok(at > T0 && at - T0 <= 500);
  clock.now = at;
  rtc.poll();
  assert.equal(irq.level, true);
  assert.equal(cmosRead(rtc, 0x0c) & 0xc0, 0xc0);
});

test('index port: bit 7 masks NMI, CMOS memory is read/write, index reads float', () => {
  const { rtc } = make();
  rtc.write(0, Uint8Array.of(0x80 | 0x40));
  assert.equal(rtc.nmiMasked, true);
  rtc.write(1, Uint8Array.of(0xab));
  const data = new Uint8Array(1);
  rtc.read(1, data);
  assert.equal(data[0], 0xab);
  rtc.read(0, data);
  assert.equal(data[0], 0xff);
  rtc.write(0, Uint8Array.of(0x40));
  assert.equal(rtc.nmiMasked, false);
  rtc.setCmosByte(0x34, 0x12);
  assert.equal(cmosRead(rtc, 0x34), 0x12);
  assert.throws(() => rtc.setCmosByte(0x00, 1), RangeError);
});

test('state round-trip keeps the guest-set time and pending flags', () => {
  const { rtc, clock } = make();
  cmosWrite(rtc, 9, 0x30); // year 2030
  cmosWrite(rtc, 0x0b, 0x12);
  clock.now += 1000;
  rtc.poll();
  const state = JSON.parse(JSON.stringify(rtc.state()));
  const irq = new FakeIrq();
  const restored = CmosRtc.fromState(state, { clock: () => clock.now, irq });
  assert.equal(irq.level, true, 'pending update interrupt re-raised');
  assert.equal(readTime(restored).slice(0, 4), '2030');
  assert.throws(() => CmosRtc.fromState({ ...state, cmos: [1, 2] }, { clock: () => 0 }), RtcStateError);
  assert.throws(() => CmosRtc.fromState({ ...state, flags: 0x01 }, { clock: () => 0 }), RtcStateError);
});
