// The legacy devices at the ports the ACPI tables announce, on a real PIO Bus.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Bus } from '../../src/bus/bus.js';
import { createPlatformDevices, defaultAcpiConfig, PM_TIMER_HZ } from '../../src/platform/index.js';
import { FakeIrq } from './fake-irq.js';

test('every device sits at its ACPI port on the PIO bus and works there', () => {
  const config = defaultAcpiConfig(2);
  const irqs = new Map<number, FakeIrq>();
  const out: number[] = [];
  const events: string[] = [];
  let mono = 5000;
  const devices = createPlatformDevices(config, {
    irq: (line) => {
      const irq = irqs.get(line) ?? new FakeIrq();
      irqs.set(line, irq);
      return irq;
    },
    wallClock: () => Date.UTC(2030, 0, 2, 3, 4, 5),
    monotonicClock: () => mono,
    serialOutput: (b) => out.push(b),
    onReset: () => events.push('reset'),
    onPowerOff: () => events.push('poweroff'),
  });
  const bus = new Bus();
  for (const d of devices.pio) bus.insert(d.base, d.size, d.device);
  const data = new Uint8Array(1);
  const outb = (port: number, v: number): void => void bus.write(port, Uint8Array.of(v));
  const inb = (port: number): number => (bus.read(port, data), data[0]!);

  outb(0x3f8, 0x4f);
  assert.deepEqual(out, [0x4f], 'UART THR at 0x3F8');
  outb(0x3ff, 0x99);
  assert.equal(inb(0x3ff), 0x99, 'UART scratch at 0x3FF');
  outb(0x3f9, 0x02);
  assert.equal(irqs.get(4)?.level, true, 'UART on IRQ 4');

  outb(0x70, 0x09);
  assert.equal(inb(0x71), 0x30, 'RTC year at 0x70/0x71');

  const t = new Uint8Array(4);
  bus.read(0x608, t);
  const t0 = new DataView(t.buffer).getUint32(0, true);
  mono += 1;
  bus.read(0x608, t);
  assert.equal(new DataView(t.buffer).getUint32(0, true) - t0, Math.floor(5001 * PM_TIMER_HZ / 1000) - Math.floor(5000 * PM_TIMER_HZ / 1000), 'PM timer at 0x608');
  bus.write(0x602, Uint8Array.of(0x00, 0x01));
  devices.pm.pressPowerButton();
  assert.equal(irqs.get(9)?.level, true, 'SCI on IRQ 9');
  bus.write(0x604, Uint8Array.of(0x01, (5 << 2) | 0x20));
  assert.deepEqual(events, ['poweroff'], 'S5 via PM1a_CNT at 0x604');

  outb(0x64, 0xfe);
  assert.deepEqual(events, ['poweroff', 'reset'], 'reset via 0x64');
  assert.equal(bus.unhandled, 0);
});
