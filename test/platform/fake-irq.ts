// A recording InterruptLine for device tests.
import type { InterruptLine } from '../../src/bus/bus-device.js';

export class FakeIrq implements InterruptLine {
  level = false;
  /** Every setLevel value, in order. */
  readonly levels: boolean[] = [];
  triggers = 0;
  setLevel(high: boolean): void {
    this.level = high;
    this.levels.push(high);
  }
  trigger(): void {
    this.triggers++;
  }
}
