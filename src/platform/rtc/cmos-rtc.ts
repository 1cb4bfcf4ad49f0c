// The PC CMOS real-time clock (MC146818A-compatible) on ports 0x70 (index, bit 7 = NMI
// disable) and 0x71 (data), as a pure state machine over an injected wall clock. Register map
// and semantics: Motorola MC146818A data sheet; CMOS layout: the IBM PC/AT convention Linux
// and firmware use (century at 0x32, see the FADT's CENTURY field).
//
// The clock runs in UTC at `clock() + offset`; the guest sets it with the SET bit (register
// B bit 7) or by writing time registers directly. Update-ended, alarm and periodic flags are
// computed from the clock whenever the guest looks, and `poll()` raises the IRQ for them: the
// host adapter calls `poll()` at `nextEventAt()` (no timers in here).
import type { BusDevice, InterruptLine } from '../../bus/bus-device.js';

export const RTC_SECONDS = 0x00;
export const RTC_SECONDS_ALARM = 0x01;
export const RTC_MINUTES = 0x02;
export const RTC_MINUTES_ALARM = 0x03;
export const RTC_HOURS = 0x04;
export const RTC_HOURS_ALARM = 0x05;
export const RTC_DAY_OF_WEEK = 0x06;
export const RTC_DAY_OF_MONTH = 0x07;
export const RTC_MONTH = 0x08;
export const RTC_YEAR = 0x09;
export const RTC_REG_A = 0x0a;
export const RTC_REG_B = 0x0b;
export const RTC_REG_C = 0x0c;
export const RTC_REG_D = 0x0d;
export const RTC_CENTURY = 0x32;

const A_UIP = 0x80;
const A_WRITABLE = 0x7f;
const B_SET = 0x80;
const B_PIE = 0x40;
const B_AIE = 0x20;
const B_UIE = 0x10;
const B_BINARY = 0x04;
const B_24H = 0x02;
const C_IRQF = 0x80;
const C_PF = 0x40;
const C_AF = 0x20;
const C_UF = 0x10;
const D_VRT = 0x80;
const INDEX_NMI_DISABLE = 0x80;
/** The update cycle: UIP is high for 244 µs before each second boundary (MC146818A, "UIP"). */
const UIP_WINDOW_MS = 0.244;
const CMOS_SIZE = 128;

export interface CmosRtcOptions {
  /** Wall-clock time in milliseconds since the Unix epoch (fractions allowed). */
  readonly clock: () => number;
  /** IRQ 8; optional (without it the flags still work for polling guests). */
  readonly irq?: InterruptLine;
}

export interface CmosRtcState {
  readonly index: number;
  readonly nmiDisabled: boolean;
  /** Guest time minus host clock, in milliseconds. */
  readonly offsetMs: number;
  /** CMOS bytes 0x00-0x7F (time registers are regenerated; alarm, A, B and memory are kept). */
  readonly cmos: readonly number[];
  /** Time fields being written while SET is held, or null. */
  readonly frozen: readonly number[] | null;
  readonly flags: number;
  readonly lastSecond: number;
  readonly lastPeriod: number;
}

interface TimeFields {
  year: number; // full year
  month: number; // 1-12
  day: number; // 1-31
  hours: number; // 0-23
  minutes: number;
  seconds: number;
  weekday: number; // 1 = Sunday
}

function toBcd(value: number): number {
  return ((Math.floor(value / 10) % 10) << 4) | value % 10;
}
function fromBcd(value: number): number {
  return (value >> 4) * 10 + (value & 0x0f);
}

function fieldsOf(ms: number): TimeFields {
  const d = new Date(Math.floor(ms / 1000) * 1000);
  return {
    year: d.getUTCFullYear(),
    month: d.getUTCMonth() + 1,
    day: d.getUTCDate(),
    hours: d.getUTCHours(),
    minutes: d.getUTCMinutes(),
    seconds: d.getUTCSeconds(),
    weekday: d.getUTCDay() + 1,
  };
}

export class CmosRtc implements BusDevice {
  private index = 0;
  private nmiDisabled = false;
  private offsetMs = 0;
  private readonly cmos = new Uint8Array(CMOS_SIZE);
  /** While SET is held: the time the guest is composing, as register values (0x00-0x09, 0x32). */
  private frozen: Uint8Array | null = null;
  private flags = 0;
  private lastSecond: number;
  private lastPeriod: number;
  private level = false;
  /** Guest writes that could not be turned into a date (a metric). */
  invalidTimeWrites = 0;

  constructor(private readonly options: CmosRtcOptions) {
    this.cmos[RTC_REG_A] = 0x26; // 32.768 kHz time base, 1024 Hz periodic rate
    this.cmos[RTC_REG_B] = B_24H; // BCD, 24-hour
    this.cmos[RTC_REG_D] = D_VRT;
    const now = this.guestNow();
    this.lastSecond = Math.floor(now / 1000);
    this.lastPeriod = Math.floor(now / this.periodMs());
  }

  /** Whether the guest disabled NMIs through bit 7 of the index port. */
  get nmiMasked(): boolean {
    return this.nmiDisabled;
  }

  /** Host-side CMOS initialisation (e.g. memory size bytes 0x34/0x35). Not for 0x00-0x0D. */
  setCmosByte(index: number, value: number): void {
    if (!Number.isInteger(index) || index < 0x0e || index >= CMOS_SIZE) throw new RangeError(`CMOS byte 0x${index.toString(16)} is not memory`);
    this.cmos[index] = value & 0xff;
  }

  // ---- BusDevice: offset 0 = index port, 1 = data port ------------------------------------

  read(offset: number, data: Uint8Array): void {
    data.fill(0xff);
    if (data.length === 0) return;
    if (offset === 1) data[0] = this.readRegister(this.index);
    // The index port is write-only: reads float (0xff).
  }

  write(offset: number, data: Uint8Array): void {
    if (data.length === 0) return;
    const value = data[0]!;
    if (offset === 0) {
      this.nmiDisabled = (value & INDEX_NMI_DISABLE) !== 0;
      this.index = value & 0x7f;
    } else if (offset === 1) this.writeRegister(this.index, value);
  }

  readRegister(index: number): number {
    index &= 0x7f;
    switch (index) {
      case RTC_REG_A: {
        const now = this.guestNow();
        const intoSecond = now - Math.floor(now / 1000) * 1000;
        const uip = !this.frozen && intoSecond >= 1000 - UIP_WINDOW_MS;
        return (this.cmos[RTC_REG_A]! & A_WRITABLE) | (uip ? A_UIP : 0);
      }
      case RTC_REG_C: {
        this.poll();
        const value = this.flags;
        this.flags = 0; // reading C clears every flag and the IRQ (MC146818A, register C)
        this.updateIrq();
        return value;
      }
      case RTC_REG_D:
        return D_VRT;
      default:
        if (isTimeRegister(index)) return (this.frozen ?? this.timeRegisters(this.guestNow()))[index]!;
        return this.cmos[index]!;
    }
  }

  writeRegister(index: number, value: number): void {
    index &= 0x7f;
    value &= 0xff;
    switch (index) {
      case RTC_REG_A:
        this.poll();
        this.cmos[RTC_REG_A] = value & A_WRITABLE; // UIP is read-only
        this.lastPeriod = Math.floor(this.guestNow() / this.periodMs());
        return;
      case RTC_REG_B: {
        const before = this.cmos[RTC_REG_B]!;
        if (value & B_SET && !(before & B_SET)) this.frozen = this.timeRegisters(this.guestNow());
        this.cmos[RTC_REG_B] = value;
        if (!(value & B_SET) && before & B_SET && this.frozen) {
          this.commit(this.frozen);
          this.frozen = null;
        }
        this.poll();
        this.updateIrq();
        return;
      }
      case RTC_REG_C:
      case RTC_REG_D:
        return; // read-only
      case RTC_SECONDS_ALARM:
      case RTC_MINUTES_ALARM:
      case RTC_HOURS_ALARM:
        this.cmos[index] = value;
        if (this.frozen) this.frozen[index] = value;
        return;
      default:
        if (isTimeRegister(index)) {
          if (this.frozen) this.frozen[index] = value;
          else {
            const registers = this.timeRegisters(this.guestNow());
            registers[index] = value;
            this.commit(registers);
          }
          return;
        }
        this.cmos[index] = value;
    }
  }

  /**
   * Brings the flags up to date with the clock and drives the IRQ: the host adapter calls it
   * at `nextEventAt()`. Returns whether the IRQ line is high.
   */
  poll(): boolean {
    if (!this.frozen) {
      const now = this.guestNow();
      const second = Math.floor(now / 1000);
      if (second !== this.lastSecond) {
        this.flags |= C_UF;
        if (this.alarmMatches(this.timeRegisters(now))) this.flags |= C_AF;
        this.lastSecond = second;
      }
      const period = Math.floor(now / this.periodMs());
      if (this.rateSelect() !== 0 && period !== this.lastPeriod) this.flags |= C_PF;
      this.lastPeriod = period;
    }
    this.updateIrq();
    return this.level;
  }

  /** Host clock time (ms) at which `poll()` should next run, or null when no interrupt is enabled. */
  nextEventAt(): number | null {
    const b = this.cmos[RTC_REG_B]!;
    let next = Infinity;
    const toHost = (guestMs: number): number => guestMs - this.offsetMs;
    if (b & (B_UIE | B_AIE)) next = Math.min(next, toHost((this.lastSecond + 1) * 1000));
    if (b & B_PIE && this.rateSelect() !== 0) next = Math.min(next, toHost((this.lastPeriod + 1) * this.periodMs()));
    return next === Infinity ? null : next;
  }

  state(): CmosRtcState {
    return {
      index: this.index,
      nmiDisabled: this.nmiDisabled,
      offsetMs: this.offsetMs,
      cmos: Array.from(this.cmos),
      frozen: this.frozen ? Array.from(this.frozen) : null,
      flags: this.flags,
      lastSecond: this.lastSecond,
      lastPeriod: this.lastPeriod,
    };
  }

  static fromState(state: CmosRtcState, options: CmosRtcOptions): CmosRtc {
    const bytes = (list: unknown, what: string): Uint8Array => {
      if (!Array.isArray(list) || list.length !== CMOS_SIZE || !list.every((b) => Number.isInteger(b) && b >= 0 && b <= 0xff)) {
        throw new RtcStateError(`invalid RTC state: ${what}`);
      }
      return Uint8Array.from(list as number[]);
    };
    if (!Number.isInteger(state.index) || state.index < 0 || state.index > 0x7f) throw new RtcStateError('invalid RTC state: index');
    if (!Number.isFinite(state.offsetMs)) throw new RtcStateError('invalid RTC state: offsetMs');
    if (!Number.isInteger(state.flags) || (state.flags & ~0xf0) !== 0) throw new RtcStateError('invalid RTC state: flags');
    if (!Number.isSafeInteger(state.lastSecond) || !Number.isSafeInteger(state.lastPeriod)) throw new RtcStateError('invalid RTC state: timestamps');
    const rtc = new CmosRtc(options);
    rtc.index = state.index;
    rtc.nmiDisabled = state.nmiDisabled === true;
    rtc.offsetMs = state.offsetMs;
    rtc.cmos.set(bytes(state.cmos, 'cmos'));
    rtc.frozen = state.frozen === null ? null : bytes(state.frozen, 'frozen');
    rtc.flags = state.flags;
    rtc.lastSecond = state.lastSecond;
    rtc.lastPeriod = state.lastPeriod;
    rtc.level = false;
    rtc.updateIrq(true);
    return rtc;
  }

  // ---- internals --------------------------------------------------------------------------

  private guestNow(): number {
    return this.options.clock() + this.offsetMs;
  }

  private rateSelect(): number {
    return this.cmos[RTC_REG_A]! & 0x0f;
  }

  /** Periodic interrupt period: rate 1 and 2 are 256 and 128 Hz, else 32768 >> (rate - 1) Hz. */
  private periodMs(): number {
    const rate = this.rateSelect();
    if (rate === 0) return 1000;
    const shift = rate <= 2 ? rate + 6 : rate - 1;
    return (1000 * (1 << shift)) / 32768;
  }

  private binary(): boolean {
    return (this.cmos[RTC_REG_B]! & B_BINARY) !== 0;
  }

  private encode(value: number): number {
    return this.binary() ? value : toBcd(value);
  }

  private decode(value: number): number {
    return this.binary() ? value : fromBcd(value);
  }

  /** Time registers 0x00-0x09 and the century byte, in the current data mode, in a CMOS image. */
  private timeRegisters(ms: number): Uint8Array {
    const t = fieldsOf(ms);
    const out = this.cmos.slice();
    out[RTC_SECONDS] = this.encode(t.seconds);
    out[RTC_MINUTES] = this.encode(t.minutes);
    if (this.cmos[RTC_REG_B]! & B_24H) out[RTC_HOURS] = this.encode(t.hours);
    else {
      const h12 = t.hours % 12 === 0 ? 12 : t.hours % 12;
      out[RTC_HOURS] = this.encode(h12) | (t.hours >= 12 ? 0x80 : 0);
    }
    out[RTC_DAY_OF_WEEK] = this.encode(t.weekday);
    out[RTC_DAY_OF_MONTH] = this.encode(t.day);
    out[RTC_MONTH] = this.encode(t.month);
    out[RTC_YEAR] = this.encode(t.year % 100);
    out[RTC_CENTURY] = this.encode(Math.floor(t.year / 100));
    return out;
  }

  /** Hours register to 0-23, honouring the 12-hour format's PM bit. */
  private hours24(raw: number): number {
    if (this.cmos[RTC_REG_B]! & B_24H) return this.decode(raw);
    const h = this.decode(raw & 0x7f) % 12;
    return raw & 0x80 ? h + 12 : h;
  }

  private commit(registers: Uint8Array): void {
    const year = this.decode(registers[RTC_CENTURY]!) * 100 + this.decode(registers[RTC_YEAR]!);
    const month = this.decode(registers[RTC_MONTH]!);
    const day = this.decode(registers[RTC_DAY_OF_MONTH]!);
    const hours = this.hours24(registers[RTC_HOURS]!);
    const minutes = this.decode(registers[RTC_MINUTES]!);
    const seconds = this.decode(registers[RTC_SECONDS]!);
    const valid = month >= 1 && month <= 12 && day >= 1 && day <= 31 && hours < 24 && minutes < 60 && seconds < 60 && year >= 1900;
    if (!valid) {
      // A guest writing garbage keeps the old time (real parts would run off into nonsense).
      this.invalidTimeWrites++;
      return;
    }
    const target = Date.UTC(year, month - 1, day, hours, minutes, seconds);
    const now = this.options.clock();
    this.offsetMs = target - now;
    this.lastSecond = Math.floor(target / 1000);
    this.lastPeriod = Math.floor(target / this.periodMs());
  }

  /** Alarm match (MC146818A: alarm bytes 0xC0-0xFF mean "don't care"). */
  private alarmMatches(now: Uint8Array): boolean {
    const match = (alarm: number, value: number): boolean => (alarm & 0xc0) === 0xc0 || alarm === value;
    return (
      match(this.cmos[RTC_SECONDS_ALARM]!, now[RTC_SECONDS]!) &&
      match(this.cmos[RTC_MINUTES_ALARM]!, now[RTC_MINUTES]!) &&
      match(this.cmos[RTC_HOURS_ALARM]!, now[RTC_HOURS]!)
    );
  }

  private updateIrq(force = false): void {
    const b = this.cmos[RTC_REG_B]!;
    const active = (this.flags & C_PF && b & B_PIE) || (this.flags & C_AF && b & B_AIE) || (this.flags & C_UF && b & B_UIE);
    if (active) this.flags |= C_IRQF;
    const level = Boolean(active);
    if (level !== this.level || force) {
      this.level = level;
      this.options.irq?.setLevel(level);
    }
  }
}

function isTimeRegister(index: number): boolean {
  return (index >= RTC_SECONDS && index <= RTC_YEAR) || index === RTC_CENTURY;
}

export class RtcStateError extends Error {
  readonly kind = 'rtc-state' as const;
  constructor(message: string) {
    super(message);
    this.name = 'RtcStateError';
  }
}
