// A 16550A UART as a pure state machine: eight byte-wide registers at offsets 0-7, a 16-byte
// receive FIFO fed by the host through `enqueueInput`, transmitted bytes to an output sink,
// and an interrupt level recomputed after every change. References: the TI/National PC16550D
// data sheet (register map, IIR priorities, FIFO trigger levels) and Linux's 8250 driver
// (drivers/tty/serial/8250/8250_port.c: autoconfig) for what a real driver probes.
//
// Transmission is instantaneous: a THR write goes straight to the sink, so THRE and TEMT are
// always set and the THRE interrupt re-arms immediately (as on an idle real UART). The
// interrupt output is not gated by MCR.OUT2 (QEMU does the same); Linux sets OUT2 anyway.
import type { BusDevice, InterruptLine } from '../../bus/bus-device.js';

// Register offsets.
const RBR_THR_DLL = 0;
const IER_DLM = 1;
const IIR_FCR = 2;
const LCR = 3;
const MCR = 4;
const LSR = 5;
const MSR = 6;
const SCR = 7;

// IER bits.
const IER_RDA = 0x01;
const IER_THRE = 0x02;
const IER_RLS = 0x04;
const IER_MSI = 0x08;
const IER_MASK = 0x0f; // bits 4-7 read as zero on a 16550A (Linux's IER test relies on it)

// IIR values (interrupt identification, highest priority first).
const IIR_NONE = 0x01;
const IIR_RLS = 0x06;
const IIR_RDA = 0x04;
const IIR_RX_TIMEOUT = 0x0c;
const IIR_THRE = 0x02;
const IIR_MSI = 0x00;
const IIR_FIFO_ENABLED = 0xc0;

// FCR bits.
const FCR_ENABLE = 0x01;
const FCR_CLEAR_RX = 0x02;
const FCR_TRIGGER_SHIFT = 6;
const RX_TRIGGER_LEVELS = [1, 4, 8, 14] as const;

const LCR_DLAB = 0x80;

// MCR bits.
const MCR_DTR = 0x01;
const MCR_RTS = 0x02;
const MCR_OUT1 = 0x04;
const MCR_OUT2 = 0x08;
const MCR_LOOP = 0x10;
const MCR_MASK = 0x1f;

// LSR bits.
const LSR_DR = 0x01;
const LSR_OE = 0x02;
const LSR_BI = 0x10;
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;
const LSR_ERRORS = 0x1e; // OE | PE | FE | BI: cleared by reading LSR

// MSR bits.
const MSR_DCTS = 0x01;
const MSR_DDSR = 0x02;
const MSR_TERI = 0x04;
const MSR_DDCD = 0x08;
const MSR_CTS = 0x10;
const MSR_DSR = 0x20;
const MSR_RI = 0x40;
const MSR_DCD = 0x80;
/** Modem lines of the host side when not in loopback: a terminal is connected and ready. */
const HOST_MODEM_LINES = MSR_CTS | MSR_DSR | MSR_DCD;

/** The 16550A's receive FIFO depth. */
export const UART_FIFO_SIZE = 16;

export interface Uart16550Options {
  readonly irq: InterruptLine;
  /** Each transmitted byte (not called in loopback mode). */
  readonly output: (byte: number) => void;
  /** The receive FIFO has room again after an `enqueueInput` that could not take everything. */
  readonly onInputSpace?: () => void;
}

export interface Uart16550State {
  readonly dll: number;
  readonly dlm: number;
  readonly ier: number;
  readonly lcr: number;
  readonly mcr: number;
  readonly scr: number;
  readonly fifoEnabled: boolean;
  readonly rxTrigger: number;
  /** Sticky LSR error bits (OE, PE, FE, BI). */
  readonly lsrErrors: number;
  /** MSR delta bits (DCTS, DDSR, TERI, DDCD). */
  readonly msrDeltas: number;
  readonly thrEmptyPending: boolean;
  readonly inputBlocked: boolean;
  readonly rx: readonly number[];
}

export class UartStateError extends Error {
  readonly kind = 'uart-state' as const;
  constructor(message: string) {
    super(message);
    this.name = 'UartStateError';
  }
}

export class Uart16550 implements BusDevice {
  private dll = 0x0c; // 9600 baud from the 1.8432 MHz clock, a BIOS's usual setting
  private dlm = 0;
  private ier = 0;
  private lcr = 0x03; // 8N1
  private mcr = MCR_OUT2;
  private scr = 0;
  private fifoEnabled = false;
  private rxTrigger = 1;
  private lsrErrors = 0;
  private msrDeltas = 0;
  /** THRE interrupt armed: THR became empty, or ETBEI was enabled while it was empty. */
  private thrEmptyPending = false;
  private inputBlocked = false;
  // Receive FIFO as a ring (no allocation per byte).
  private readonly rx = new Uint8Array(UART_FIFO_SIZE);
  private rxHead = 0;
  private rxCount = 0;
  private level = false;
  /** Metrics. */
  readonly stats = { transmitted: 0, received: 0, overruns: 0 };

  constructor(private readonly options: Uart16550Options) {}

  // ---- host side -------------------------------------------------------------------------

  /** Free bytes in the receive FIFO (0 in loopback mode: the serial input is disconnected). */
  inputSpace(): number {
    if (this.mcr & MCR_LOOP) return 0;
    return this.capacity() - this.rxCount;
  }

  /** Queues bytes from the host; returns how many were taken. The rest waits for `onInputSpace`. */
  enqueueInput(bytes: Uint8Array): number {
    const take = Math.min(bytes.length, this.inputSpace());
    for (let i = 0; i < take; i++) this.push(bytes[i]!);
    if (take < bytes.length) this.inputBlocked = true;
    this.stats.received += take;
    this.update();
    return take;
  }

  /**
   * A break condition on the line (Ctrl-A b on the console): a zero character is received
   * with LSR.BI set (data sheet, LSR bit 4). Linux treats it as the SysRq prefix.
   */
  sendBreak(): void {
    if (this.mcr & MCR_LOOP) return;
    this.push(0);
    this.lsrErrors |= LSR_BI;
    this.update();
  }

  /** The current interrupt level (also driven onto the InterruptLine). */
  interruptLevel(): boolean {
    return this.level;
  }

  // ---- guest side (BusDevice) -------------------------------------------------------------

  read(offset: number, data: Uint8Array): void {
    data.fill(0);
    if (data.length === 0) return;
    data[0] = this.readRegister(offset);
  }

  write(offset: number, data: Uint8Array): void {
    if (data.length === 0) return;
    this.writeRegister(offset, data[0]!);
  }

  readRegister(offset: number): number {
    let value = 0xff;
    switch (offset) {
      case RBR_THR_DLL:
        if (this.lcr & LCR_DLAB) value = this.dll;
        else value = this.popReceived();
        break;
      case IER_DLM:
        value = this.lcr & LCR_DLAB ? this.dlm : this.ier;
        break;
      case IIR_FCR: {
        const id = this.pendingInterrupt();
        // Reading IIR while it reports THRE clears that interrupt (data sheet, table 4).
        if (id === IIR_THRE) this.thrEmptyPending = false;
        value = id | (this.fifoEnabled ? IIR_FIFO_ENABLED : 0);
        break;
      }
      case LCR:
        value = this.lcr;
        break;
      case MCR:
        value = this.mcr;
        break;
      case LSR:
        value = this.lineStatus();
        this.lsrErrors = 0;
        break;
      case MSR:
        value = this.modemLines() | this.msrDeltas;
        this.msrDeltas = 0;
        break;
      case SCR:
        value = this.scr;
        break;
      default:
        return 0xff; // outside the 8 registers: nothing changes
    }
    this.update();
    return value;
  }

  writeRegister(offset: number, value: number): void {
    value &= 0xff;
    switch (offset) {
      case RBR_THR_DLL:
        if (this.lcr & LCR_DLAB) this.dll = value;
        else this.transmit(value);
        break;
      case IER_DLM:
        if (this.lcr & LCR_DLAB) this.dlm = value;
        else {
          const enablingThre = !(this.ier & IER_THRE) && value & IER_THRE;
          this.ier = value & IER_MASK;
          // The THR is always empty here, so enabling ETBEI raises a THRE interrupt: Linux's
          // startup test (UART_BUG_THRE) checks exactly that.
          if (enablingThre) this.thrEmptyPending = true;
        }
        break;
      case IIR_FCR:
        this.writeFifoControl(value);
        break;
      case LCR:
        this.lcr = value;
        break;
      case MCR:
        this.writeModemControl(value & MCR_MASK);
        break;
      case SCR:
        this.scr = value;
        break;
      default:
        return; // LSR and MSR are read-only; other offsets do not exist
    }
    this.update();
  }

  // ---- snapshot ---------------------------------------------------------------------------

  state(): Uart16550State {
    const rx: number[] = [];
    for (let i = 0; i < this.rxCount; i++) rx.push(this.rx[(this.rxHead + i) % UART_FIFO_SIZE]!);
    return {
      dll: this.dll,
      dlm: this.dlm,
      ier: this.ier,
      lcr: this.lcr,
      mcr: this.mcr,
      scr: this.scr,
      fifoEnabled: this.fifoEnabled,
      rxTrigger: this.rxTrigger,
      lsrErrors: this.lsrErrors,
      msrDeltas: this.msrDeltas,
      thrEmptyPending: this.thrEmptyPending,
      inputBlocked: this.inputBlocked,
      rx,
    };
  }

  /** Restores a snapshot; validates every field and re-drives the interrupt line. */
  static fromState(state: Uart16550State, options: Uart16550Options): Uart16550 {
    const byte = (v: unknown, what: string, mask = 0xff): number => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xff || (v & ~mask) !== 0) throw new UartStateError(`invalid UART state: ${what}=${String(v)}`);
      return v;
    };
    const uart = new Uart16550(options);
    uart.dll = byte(state.dll, 'dll');
    uart.dlm = byte(state.dlm, 'dlm');
    uart.ier = byte(state.ier, 'ier', IER_MASK);
    uart.lcr = byte(state.lcr, 'lcr');
    uart.mcr = byte(state.mcr, 'mcr', MCR_MASK);
    uart.scr = byte(state.scr, 'scr');
    uart.lsrErrors = byte(state.lsrErrors, 'lsrErrors', LSR_ERRORS);
    uart.msrDeltas = byte(state.msrDeltas, 'msrDeltas', 0x0f);
    if (!(RX_TRIGGER_LEVELS as readonly number[]).includes(state.rxTrigger)) throw new UartStateError(`invalid UART state: rxTrigger=${state.rxTrigger}`);
    uart.rxTrigger = state.rxTrigger;
    uart.fifoEnabled = state.fifoEnabled === true;
    uart.thrEmptyPending = state.thrEmptyPending === true;
    uart.inputBlocked = state.inputBlocked === true;
    if (!Array.isArray(state.rx) || state.rx.length > uart.capacity()) throw new UartStateError('invalid UART state: receive FIFO too long');
    state.rx.forEach((b, i) => uart.push(byte(b, `rx[${i}]`)));
    uart.level = false;
    uart.update(true);
    return uart;
  }

  // ---- internals --------------------------------------------------------------------------

  private capacity(): number {
    return this.fifoEnabled ? UART_FIFO_SIZE : 1;
  }

  private push(byte: number): void {
    if (this.rxCount >= this.capacity()) {
      // Overrun (data sheet: the character in the shift register is lost, OE is set).
      this.lsrErrors |= LSR_OE;
      this.stats.overruns++;
      return;
    }
    this.rx[(this.rxHead + this.rxCount) % UART_FIFO_SIZE] = byte;
    this.rxCount++;
  }

  private popReceived(): number {
    if (this.rxCount === 0) return 0;
    const byte = this.rx[this.rxHead]!;
    this.rxHead = (this.rxHead + 1) % UART_FIFO_SIZE;
    this.rxCount--;
    this.signalSpace();
    return byte;
  }

  private clearReceived(): void {
    this.rxHead = 0;
    this.rxCount = 0;
    this.signalSpace();
  }

  private signalSpace(): void {
    if (this.inputBlocked && this.inputSpace() > 0) {
      this.inputBlocked = false;
      // Deferred to a microtask: the callback may call enqueueInput, which must not run in
      // the middle of a register access.
      const callback = this.options.onInputSpace;
      if (callback) queueMicrotask(callback);
    }
  }

  private transmit(byte: number): void {
    if (this.mcr & MCR_LOOP) this.push(byte);
    else {
      this.stats.transmitted++;
      this.options.output(byte);
    }
    // THR was written (clearing THRE) and the byte left at once: THRE is set again.
    this.thrEmptyPending = true;
  }

  private writeFifoControl(value: number): void {
    const enable = (value & FCR_ENABLE) !== 0;
    if (enable !== this.fifoEnabled) {
      // Changing the FIFO enable bit clears both FIFOs (data sheet, FCR bit 0).
      this.fifoEnabled = enable;
      this.clearReceived();
    }
    if (!enable) return; // the other bits need FCR0 set in the same write
    if (value & FCR_CLEAR_RX) {
      this.clearReceived();
      this.lsrErrors &= ~LSR_OE;
    }
    this.rxTrigger = RX_TRIGGER_LEVELS[(value >> FCR_TRIGGER_SHIFT) & 3]!;
  }

  private writeModemControl(value: number): void {
    const before = this.modemLines();
    const wasLoop = (this.mcr & MCR_LOOP) !== 0;
    this.mcr = value;
    const after = this.modemLines();
    const changed = before ^ after;
    if (changed & MSR_CTS) this.msrDeltas |= MSR_DCTS;
    if (changed & MSR_DSR) this.msrDeltas |= MSR_DDSR;
    if (changed & MSR_DCD) this.msrDeltas |= MSR_DDCD;
    if (before & MSR_RI && !(after & MSR_RI)) this.msrDeltas |= MSR_TERI; // trailing edge only
    if (wasLoop && !(value & MCR_LOOP)) this.signalSpace();
  }

  /** MSR bits 4-7: wired back from MCR in loopback, the host's lines otherwise. */
  private modemLines(): number {
    if (!(this.mcr & MCR_LOOP)) return HOST_MODEM_LINES;
    let lines = 0;
    if (this.mcr & MCR_RTS) lines |= MSR_CTS;
    if (this.mcr & MCR_DTR) lines |= MSR_DSR;
    if (this.mcr & MCR_OUT1) lines |= MSR_RI;
    if (this.mcr & MCR_OUT2) lines |= MSR_DCD;
    return lines;
  }

  private lineStatus(): number {
    let lsr = LSR_THRE | LSR_TEMT | this.lsrErrors;
    if (this.rxCount > 0) lsr |= LSR_DR;
    return lsr;
  }

  /** The highest-priority pending interrupt as an IIR value (data sheet table 4). */
  private pendingInterrupt(): number {
    if (this.ier & IER_RLS && this.lsrErrors & LSR_ERRORS) return IIR_RLS;
    if (this.ier & IER_RDA && this.rxCount > 0) {
      // Without a clock the character timeout fires at once for data below the trigger level.
      if (!this.fifoEnabled || this.rxCount >= this.rxTrigger) return IIR_RDA;
      return IIR_RX_TIMEOUT;
    }
    if (this.ier & IER_THRE && this.thrEmptyPending) return IIR_THRE;
    if (this.ier & IER_MSI && this.msrDeltas) return IIR_MSI;
    return IIR_NONE;
  }

  private update(force = false): void {
    const level = this.pendingInterrupt() !== IIR_NONE;
    if (level !== this.level || force) {
      this.level = level;
      this.options.irq.setLevel(level);
    }
  }
}
