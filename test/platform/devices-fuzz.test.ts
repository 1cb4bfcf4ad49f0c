// Hostile guests: random access sequences (any offset, any width) to every platform device
// never throw, and each device still works afterwards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { BusDevice } from '../../src/bus/bus-device.js';
import { AcpiPm, CmosRtc, I8042, Uart16550 } from '../../src/platform/index.js';
import { FakeIrq } from './fake-irq.js';

const access = fc.record({ write: fc.boolean(), offset: fc.integer({ min: -4, max: 16 }), size: fc.constantFrom(0, 1, 2, 4, 8), value: fc.integer({ min: 0, max: 255 }) });

function hammer(device: BusDevice, ops: Array<{ write: boolean; offset: number; size: number; value: number }>): void {
  for (const op of ops) {
    const data = new Uint8Array(op.size).fill(op.value);
    if (op.write) device.write(op.offset, data);
    else device.read(op.offset, data);
  }
}

test('random accesses to the RTC, i8042, PM blocks and UART never throw', () => {
  fc.assert(
    fc.property(fc.array(access, { maxLength: 150 }), fc.double({ min: 0, max: 4e12, noNaN: true }), (ops, start) => {
      let now = start;
      const rtc = new CmosRtc({ clock: () => (now += 0.37), irq: new FakeIrq() });
      hammer(rtc, ops);
      rtc.poll();
      rtc.nextEventAt();
      const resets: number[] = [];
      const kbc = new I8042({ onReset: () => resets.push(1), keyboardIrq: new FakeIrq(), auxIrq: new FakeIrq() });
      hammer(kbc, ops);
      hammer(kbc.dataPort, ops);
      hammer(kbc.commandPort, ops);
      const pm = new AcpiPm({ sci: new FakeIrq(), clock: () => (now += 0.37), onPowerOff: () => {} });
      hammer(pm.eventBlock, ops);
      hammer(pm.controlBlock, ops);
      hammer(pm.timer, ops);
      pm.poll();
      const uart = new Uart16550({ irq: new FakeIrq(), output: () => {} });
      hammer(uart, ops);
      // Still working: the i8042 resets on 0xFE, the RTC answers register D, the UART's
      // scratch register holds a value.
      const before = resets.length;
      kbc.writeCommand(0xfe);
      assert.equal(resets.length, before + 1);
      assert.equal(rtc.readRegister(0x0d), 0x80);
      uart.writeRegister(3, 0);
      uart.writeRegister(7, 0x3c);
      assert.equal(uart.readRegister(7), 0x3c);
    }),
    { numRuns: 200 },
  );
});
