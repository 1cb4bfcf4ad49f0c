// ACPI fixed hardware registers (ACPI 6.5 section 4.8.3): the PM1a event block (status and
// enable, 2 bytes each), the PM1a control block (2 bytes) and the PM timer (4 bytes, 32-bit,
// 3.579545 MHz). The FADT points at their I/O ports (src/platform/acpi/tables.ts). The SCI
// is a level: high while SCI_EN is set and some status bit is set with its enable bit.
import type { BusDevice, InterruptLine } from '../../bus/bus-device.js';

/** PM1 status / enable bits (4.8.3.1, tables 4.16 and 4.17). */
export const PM1_TMR = 1 << 0;
export const PM1_GBL = 1 << 5;
export const PM1_PWRBTN = 1 << 8;
export const PM1_SLPBTN = 1 << 9;
export const PM1_RTC = 1 << 10;
export const PM1_WAK = 1 << 15;
const STATUS_MASK = PM1_TMR | 1 << 4 | PM1_GBL | PM1_PWRBTN | PM1_SLPBTN | PM1_RTC | 1 << 14 | PM1_WAK;
const ENABLE_MASK = PM1_TMR | PM1_GBL | PM1_PWRBTN | PM1_SLPBTN | PM1_RTC | 1 << 14;
/** PM1 control bits (4.8.3.2.1, table 4.18). */
export const PM1_CNT_SCI_EN = 1 << 0;
const CNT_BM_RLD = 1 << 1;
const CNT_SLP_TYP_SHIFT = 10;
const CNT_SLP_TYP_MASK = 7 << CNT_SLP_TYP_SHIFT;
export const PM1_CNT_SLP_EN = 1 << 13;
const CNT_STORED = PM1_CNT_SCI_EN | CNT_BM_RLD | CNT_SLP_TYP_MASK; // GBL_RLS, SLP_EN read as 0

/** The PM timer's frequency (4.8.3.3). */
export const PM_TIMER_HZ = 3_579_545;
const TIMER_MSB_PERIOD_TICKS = 2 ** 31; // TMR_STS on every toggle of bit 31 (32-bit timer)

export interface AcpiPmOptions {
  readonly sci: InterruptLine;
  /** Monotonic time in milliseconds (fractions give the timer its resolution). */
  readonly clock: () => number;
  /** The SLP_TYP value that means S5 (the DSDT's \_S5_); default 5. */
  readonly s5SleepType?: number;
  /** The guest wrote SLP_EN with this SLP_TYP. */
  readonly onSleep?: (sleepType: number) => void;
  /** The guest entered S5: power the machine off. */
  readonly onPowerOff: () => void;
}

export interface AcpiPmState {
  readonly status: number;
  readonly enable: number;
  readonly control: number;
  readonly timerHalfPeriods: number;
}

export class AcpiPmStateError extends Error {
  readonly kind = 'acpi-pm-state' as const;
  constructor(message: string) {
    super(message);
    this.name = 'AcpiPmStateError';
  }
}

export class AcpiPm {
  private status = 0;
  private enable = 0;
  /** SMI_CMD is 0 in the FADT: the machine is always in ACPI mode, so SCI_EN starts set. */
  private control = PM1_CNT_SCI_EN;
  /** How many MSB toggles of the timer were already accounted for in TMR_STS. */
  private timerHalfPeriods: number;
  private level = false;
  private readonly s5: number;
  /** Writes that could not be decoded (bad offsets): a metric. */
  ignoredAccesses = 0;

  /** PM1a_EVT_BLK: offsets 0-1 status (write 1 to clear), 2-3 enable. */
  readonly eventBlock: BusDevice = {
    read: (offset, data) => this.readBytes(offset, data, 4, (o) => (o < 2 ? this.readStatus() >> (8 * o) : this.enable >> (8 * (o - 2)))),
    write: (offset, data) => this.writeEvent(offset, data),
  };
  /** PM1a_CNT_BLK: 2 bytes. */
  readonly controlBlock: BusDevice = {
    read: (offset, data) => this.readBytes(offset, data, 2, (o) => this.control >> (8 * o)),
    write: (offset, data) => this.writeControl(offset, data),
  };
  /** PM_TMR_BLK: 4 bytes, read-only. */
  readonly timer: BusDevice = {
    read: (offset, data) => {
      const value = this.timerValue();
      this.readBytes(offset, data, 4, (o) => Math.floor(value / 2 ** (8 * o)));
    },
    write: () => {
      this.ignoredAccesses++;
    },
  };

  constructor(private readonly options: AcpiPmOptions) {
    this.s5 = options.s5SleepType ?? 5;
    this.timerHalfPeriods = this.halfPeriods();
  }

  /** The PM timer's current value (32 bits). */
  timerValue(): number {
    return Math.floor(this.options.clock() * (PM_TIMER_HZ / 1000)) % 2 ** 32;
  }

  /** A press of the power button (fixed feature): PWRBTN_STS, and the SCI if enabled. */
  pressPowerButton(): void {
    this.status |= PM1_PWRBTN;
    this.update();
  }

  /** Whether the guest enabled the power button event (so a press will be seen). */
  get powerButtonEnabled(): boolean {
    return (this.enable & PM1_PWRBTN) !== 0 && (this.control & PM1_CNT_SCI_EN) !== 0;
  }

  /** Brings TMR_STS up to date and drives the SCI (call at `nextEventAt()` when TMR_EN is set). */
  poll(): boolean {
    this.readStatus();
    this.update();
    return this.level;
  }

  /** Clock time (ms) of the next timer-carry event, or null when TMR_EN is clear. */
  nextEventAt(): number | null {
    if (!(this.enable & PM1_TMR)) return null;
    return ((this.timerHalfPeriods + 1) * TIMER_MSB_PERIOD_TICKS * 1000) / PM_TIMER_HZ;
  }

  state(): AcpiPmState {
    return { status: this.readStatus(), enable: this.enable, control: this.control, timerHalfPeriods: this.timerHalfPeriods };
  }

  static fromState(state: AcpiPmState, options: AcpiPmOptions): AcpiPm {
    const check = (v: unknown, mask: number, what: string): number => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || (v & ~mask) !== 0) throw new AcpiPmStateError(`invalid ACPI PM state: ${what}`);
      return v;
    };
    const pm = new AcpiPm(options);
    pm.status = check(state.status, STATUS_MASK, 'status');
    pm.enable = check(state.enable, ENABLE_MASK, 'enable');
    pm.control = check(state.control, CNT_STORED, 'control');
    pm.level = false;
    pm.update(true);
    return pm;
  }

  // ---- internals --------------------------------------------------------------------------

  private halfPeriods(): number {
    return Math.floor((this.options.clock() * (PM_TIMER_HZ / 1000)) / TIMER_MSB_PERIOD_TICKS);
  }

  private readStatus(): number {
    const now = this.halfPeriods();
    if (now !== this.timerHalfPeriods) {
      this.timerHalfPeriods = now;
      this.status |= PM1_TMR;
    }
    return this.status;
  }

  private readBytes(offset: number, data: Uint8Array, size: number, byteAt: (offset: number) => number): void {
    for (let i = 0; i < data.length; i++) {
      const o = offset + i;
      data[i] = o >= 0 && o < size ? byteAt(o) & 0xff : 0xff;
    }
  }

  private writeEvent(offset: number, data: Uint8Array): void {
    for (let i = 0; i < data.length; i++) {
      const o = offset + i;
      const byte = data[i]!;
      if (o === 0 || o === 1) {
        this.readStatus();
        this.status &= ~((byte << (8 * o)) & STATUS_MASK); // write 1 to clear (4.8.3.1.1)
      } else if (o === 2 || o === 3) {
        const shift = 8 * (o - 2);
        this.enable = ((this.enable & ~(0xff << shift)) | (byte << shift)) & ENABLE_MASK;
      } else this.ignoredAccesses++;
    }
    this.update();
  }

  private writeControl(offset: number, data: Uint8Array): void {
    let value = this.control;
    let touched = 0;
    for (let i = 0; i < data.length; i++) {
      const o = offset + i;
      if (o !== 0 && o !== 1) {
        this.ignoredAccesses++;
        continue;
      }
      value = (value & ~(0xff << (8 * o))) | (data[i]! << (8 * o));
      touched |= 0xff << (8 * o);
    }
    this.control = value & CNT_STORED;
    this.update();
    if (touched & PM1_CNT_SLP_EN && value & PM1_CNT_SLP_EN) {
      const sleepType = (value & CNT_SLP_TYP_MASK) >> CNT_SLP_TYP_SHIFT;
      this.options.onSleep?.(sleepType);
      if (sleepType === this.s5) this.options.onPowerOff();
    }
  }

  private update(force = false): void {
    const level = (this.control & PM1_CNT_SCI_EN) !== 0 && (this.status & this.enable) !== 0;
    if (level !== this.level || force) {
      this.level = level;
      this.options.sci.setLevel(level);
    }
  }
}
