// An i8042 keyboard controller with nothing plugged in: enough for the guest to reset the
// machine (command 0xFE, or bit 0 of the output port) and for Linux's i8042/atkbd/psmouse
// probes to finish at once. Bytes sent to the keyboard or mouse are answered 0xFE with the
// TIMEOUT status bit, which Linux's serio layer reads as "no device" (no 500 ms waits).
// Commands: IBM PC/AT Technical Reference, "Keyboard controller"; Linux
// drivers/input/serio/i8042.c for what a driver issues.
import type { BusDevice, InterruptLine } from '../../bus/bus-device.js';

// Status register bits.
const STR_OBF = 0x01;
const STR_SYS = 0x04;
const STR_CMD = 0x08; // last write went to the command port
const STR_KEYLOCK = 0x10; // 1: keyboard not inhibited
const STR_AUXDATA = 0x20;
const STR_TIMEOUT = 0x40;

// Controller configuration byte ("command byte") bits.
const CTR_KBDINT = 0x01;
const CTR_AUXINT = 0x02;
const CTR_SYS = 0x04;
const CTR_KBDDIS = 0x10;
const CTR_AUXDIS = 0x20;
const CTR_XLATE = 0x40;

const OUTPUT_RESET_LINE = 0x01; // output port bit 0: system reset, active low
const OUTPUT_A20 = 0x02;
const QUEUE_SIZE = 16;
/** Response of an absent PS/2 device, delivered with STR_TIMEOUT. */
const NO_DEVICE = 0xfe;

export interface I8042Options {
  /** The guest asked for a system reset (command 0xFE or output port bit 0 low). */
  readonly onReset: () => void;
  /** IRQ 1 and IRQ 12 (optional). */
  readonly keyboardIrq?: InterruptLine;
  readonly auxIrq?: InterruptLine;
}

type Pending = 'none' | 'ctr' | 'output-port' | 'kbd-out' | 'aux-out' | 'aux-device';

export class I8042 implements BusDevice {
  private ctr = CTR_KBDINT | CTR_SYS | CTR_XLATE | CTR_AUXDIS;
  private outputPort = OUTPUT_RESET_LINE | OUTPUT_A20;
  private lastWasCommand = false;
  private pending: Pending = 'none';
  private readonly queue = new Uint16Array(QUEUE_SIZE); // byte | flags << 8
  private head = 0;
  private count = 0;
  private kbdLevel = false;
  private auxLevel = false;
  /** Commands not understood (a metric; they are ignored). */
  unknownCommands = 0;
  resets = 0;

  /** Port 0x60 and port 0x64 as separate bus devices (the PIO bus maps each at its port). */
  readonly dataPort: BusDevice = { read: (_o, d) => this.fill(d, this.readData()), write: (_o, d) => d.length > 0 && this.writeData(d[0]!) };
  readonly commandPort: BusDevice = { read: (_o, d) => this.fill(d, this.readStatus()), write: (_o, d) => d.length > 0 && this.writeCommand(d[0]!) };

  constructor(private readonly options: I8042Options) {}

  /** As one device spanning 0x60-0x64: offset 0 data, offset 4 status/command. */
  read(offset: number, data: Uint8Array): void {
    if (offset === 0) this.dataPort.read(0, data);
    else if (offset === 4) this.commandPort.read(0, data);
    else data.fill(0xff);
  }

  write(offset: number, data: Uint8Array): void {
    if (offset === 0) this.dataPort.write(0, data);
    else if (offset === 4) this.commandPort.write(0, data);
  }

  get a20Enabled(): boolean {
    return (this.outputPort & OUTPUT_A20) !== 0;
  }

  readStatus(): number {
    let status = STR_KEYLOCK | (this.ctr & CTR_SYS ? STR_SYS : 0) | (this.lastWasCommand ? STR_CMD : 0);
    if (this.count > 0) {
      const flags = this.queue[this.head]! >> 8;
      status |= STR_OBF | flags;
    }
    return status;
  }

  readData(): number {
    if (this.count === 0) return 0; // an empty buffer: the last byte stays latched on hardware
    const entry = this.queue[this.head]!;
    this.head = (this.head + 1) % QUEUE_SIZE;
    this.count--;
    this.updateIrqs();
    return entry & 0xff;
  }

  writeCommand(command: number): void {
    this.lastWasCommand = true;
    this.pending = 'none';
    switch (command) {
      case 0x20: // read configuration byte
        this.respond(this.ctr);
        break;
      case 0x60: // write configuration byte (next data byte)
        this.pending = 'ctr';
        break;
      case 0xa7: // disable aux
        this.ctr |= CTR_AUXDIS;
        break;
      case 0xa8: // enable aux
        this.ctr &= ~CTR_AUXDIS;
        break;
      case 0xa9: // aux interface test: 0 = OK
      case 0xab: // keyboard interface test: 0 = OK
        this.respond(0x00);
        break;
      case 0xaa: // controller self-test
        this.ctr |= CTR_SYS;
        this.respond(0x55);
        break;
      case 0xad: // disable keyboard
        this.ctr |= CTR_KBDDIS;
        break;
      case 0xae: // enable keyboard
        this.ctr &= ~CTR_KBDDIS;
        break;
      case 0xd0: // read output port
        this.respond(this.outputPort);
        break;
      case 0xd1: // write output port (next data byte)
        this.pending = 'output-port';
        break;
      case 0xd2: // next data byte appears as keyboard input
        this.pending = 'kbd-out';
        break;
      case 0xd3: // next data byte appears as aux input (Linux's AUX loop test)
        this.pending = 'aux-out';
        break;
      case 0xd4: // next data byte goes to the aux device
        this.pending = 'aux-device';
        break;
      default:
        if (command >= 0xf0) {
          // Pulse output lines whose bit is 0 in the low nibble; bit 0 is the reset line.
          if (!(command & 0x01)) this.reset();
        } else this.unknownCommands++;
    }
    this.updateIrqs();
  }

  writeData(value: number): void {
    this.lastWasCommand = false;
    const pending = this.pending;
    this.pending = 'none';
    switch (pending) {
      case 'ctr':
        this.ctr = value & 0x77;
        break;
      case 'output-port':
        this.outputPort = value;
        if (!(value & OUTPUT_RESET_LINE)) this.reset();
        break;
      case 'kbd-out':
        this.push(value, 0);
        break;
      case 'aux-out':
        this.push(value, STR_AUXDATA);
        break;
      case 'aux-device':
        this.push(NO_DEVICE, STR_AUXDATA | STR_TIMEOUT);
        break;
      default:
        // A byte for the keyboard: nobody is there.
        this.push(NO_DEVICE, STR_TIMEOUT);
    }
    this.updateIrqs();
  }

  private reset(): void {
    this.resets++;
    this.options.onReset();
  }

  private respond(value: number): void {
    this.push(value, 0);
  }

  private push(value: number, flags: number): void {
    if (this.count === QUEUE_SIZE) return; // a guest that never reads loses the newest byte
    this.queue[(this.head + this.count) % QUEUE_SIZE] = (value & 0xff) | (flags << 8);
    this.count++;
  }

  private fill(data: Uint8Array, value: number): void {
    data.fill(0);
    if (data.length > 0) data[0] = value;
  }

  private updateIrqs(): void {
    const headFlags = this.count > 0 ? this.queue[this.head]! >> 8 : -1;
    const kbd = headFlags >= 0 && !(headFlags & STR_AUXDATA) && (this.ctr & CTR_KBDINT) !== 0;
    const aux = headFlags >= 0 && (headFlags & STR_AUXDATA) !== 0 && (this.ctr & CTR_AUXINT) !== 0;
    if (kbd !== this.kbdLevel) {
      this.kbdLevel = kbd;
      this.options.keyboardIrq?.setLevel(kbd);
    }
    if (aux !== this.auxLevel) {
      this.auxLevel = aux;
      this.options.auxIrq?.setLevel(aux);
    }
  }
}
