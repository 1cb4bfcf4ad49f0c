// The serial console host adapter: escapes, raw-mode restore, back-pressure into the UART.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { EscapeFilter, TerminalConsole, Uart16550, type ConsoleInput, type EscapeCommand } from '../../src/platform/index.js';
import { FakeIrq } from './fake-irq.js';

function runFilter(chunks: string[]): { bytes: string; commands: EscapeCommand[] } {
  const filter = new EscapeFilter();
  let bytes = '';
  const commands: EscapeCommand[] = [];
  for (const chunk of chunks) {
    filter.filter(Buffer.from(chunk, 'latin1'), { bytes: (run) => (bytes += Buffer.from(run).toString('latin1')), command: (c) => commands.push(c) });
  }
  return { bytes, commands };
}

test('escape filter: Ctrl-A x quits, Ctrl-A Ctrl-A sends Ctrl-A, split across chunks', () => {
  assert.deepEqual(runFilter(['ab\x01xcd']), { bytes: 'abcd', commands: ['quit'] });
  assert.deepEqual(runFilter(['a\x01', '\x01b']), { bytes: 'a\x01b', commands: [] });
  assert.deepEqual(runFilter(['\x01', 'X']), { bytes: '', commands: ['quit'] });
  assert.deepEqual(runFilter(['\x01b\x01h\x01?\x01zq']), { bytes: 'q', commands: ['break', 'help', 'help'] });
  assert.deepEqual(runFilter(['plain text\r\n']), { bytes: 'plain text\r\n', commands: [] });
});

class FakeTty extends EventEmitter implements ConsoleInput {
  readonly isTTY = true;
  isRaw = false;
  readonly modes: boolean[] = [];
  pausedCount = 0;
  resumedCount = 0;
  setRawMode(mode: boolean): this {
    this.isRaw = mode;
    this.modes.push(mode);
    return this;
  }
  pause(): this {
    this.pausedCount++;
    return this;
  }
  resume(): this {
    this.resumedCount++;
    return this;
  }
}

function setup(): { tty: FakeTty; written: Buffer[]; uart: Uart16550; console: TerminalConsole; quits: number[] } {
  const tty = new FakeTty();
  const written: Buffer[] = [];
  const quits: number[] = [];
  let consoleRef: TerminalConsole | undefined;
  const uart = new Uart16550({ irq: new FakeIrq(), output: (b) => consoleRef!.writeByte(b), onInputSpace: () => consoleRef!.inputSpaceAvailable() });
  const console = new TerminalConsole({ input: tty, output: { write: (c) => (written.push(Buffer.from(c)), true) }, onQuit: () => quits.push(1) });
  consoleRef = console;
  console.start(uart);
  return { tty, written, uart, console, quits };
}

test('raw mode is set on start and restored on stop, once', () => {
  const { tty, console } = setup();
  assert.equal(console.interactive, true);
  assert.deepEqual(tty.modes, [true]);
  console.stop();
  console.stop();
  assert.deepEqual(tty.modes, [true, false]);
  assert.equal(process.listenerCount('SIGTERM'), 0, 'signal handlers removed');
});

test('raw mode is restored when the process exits', () => {
  const { tty } = setup();
  process.emit('exit', 0);
  assert.deepEqual(tty.modes, [true, false]);
  process.removeAllListeners('SIGHUP'); // tidy: the console was not stopped
  process.removeAllListeners('SIGTERM');
  process.removeAllListeners('SIGQUIT');
});

test('guest output is batched to the terminal; Ctrl-A x calls onQuit', async () => {
  const { tty, written, uart, console, quits } = setup();
  for (const b of Buffer.from('login: ')) uart.writeRegister(0, b);
  await new Promise((r) => setImmediate(r));
  assert.equal(Buffer.concat(written).toString(), 'login: ');
  assert.equal(written.length, 1, 'one write for the whole burst');
  tty.emit('data', Buffer.from('\x01x'));
  assert.deepEqual(quits, [1]);
  console.stop();
});

test('typed input beyond the FIFO pauses stdin and flows on as the guest reads', async () => {
  const { tty, uart, console } = setup();
  uart.writeRegister(2, 0x01); // FIFOs on: 16 bytes
  const text = 'The quick brown fox jumps over the lazy dog\n';
  tty.emit('data', Buffer.from(text));
  assert.equal(tty.pausedCount, 1, 'stdin paused while the FIFO is full');
  let received = '';
  for (let rounds = 0; rounds < 20 && received.length < text.length; rounds++) {
    while (uart.readRegister(5) & 1) received += String.fromCharCode(uart.readRegister(0));
    await Promise.resolve(); // onInputSpace runs as a microtask
  }
  assert.equal(received, text);
  assert.ok(tty.resumedCount >= 2, 'stdin resumed after the backlog drained');
  console.stop();
});

test('Ctrl-A b sends a break: the guest sees LSR.BI and a zero byte', () => {
  const { tty, uart, console } = setup();
  tty.emit('data', Buffer.from('\x01b'));
  const lsr = uart.readRegister(5);
  assert.equal(lsr & 0x11, 0x11, 'BI and DR');
  assert.equal(uart.readRegister(0), 0);
  console.stop();
});

test('a non-TTY input is a plain pipe: no raw mode', () => {
  const pipe = Object.assign(new EventEmitter(), { pause() {}, resume() {} }) as unknown as ConsoleInput;
  const console = new TerminalConsole({ input: pipe, output: { write: () => true }, onQuit: () => {} });
  assert.equal(console.interactive, false);
  const uart = new Uart16550({ irq: new FakeIrq(), output: () => {} });
  console.start(uart);
  (pipe as unknown as EventEmitter).emit('data', Buffer.from('a'));
  assert.equal(uart.readRegister(0), 'a'.charCodeAt(0));
  console.stop();
});
