// Host adapter: the guest's serial console on the host terminal. When stdin is a TTY it is put
// in raw mode (so Ctrl-C, arrows etc. reach the guest) and restored on every exit path
// (stop(), process exit including uncaught exceptions, SIGTERM/SIGHUP/SIGQUIT); otherwise
// stdin and stdout are plain pipes. Escape sequences are handled by EscapeFilter (Ctrl-A x
// quits). The adapter runs on the thread that owns the UART: it calls enqueueInput directly.
import { EscapeFilter, ESCAPE_HELP, type EscapeCommand } from './escape.js';

/** What the adapter needs from the UART (Uart16550 provides it). */
export interface SerialPort {
  enqueueInput(bytes: Uint8Array): number;
  sendBreak(): void;
}

export interface ConsoleInput {
  on(event: 'data', listener: (chunk: Buffer) => void): unknown;
  on(event: 'end', listener: () => void): unknown;
  removeListener(event: 'data', listener: (chunk: Buffer) => void): unknown;
  removeListener(event: 'end', listener: () => void): unknown;
  pause(): unknown;
  resume(): unknown;
  readonly isTTY?: boolean;
  setRawMode?(mode: boolean): unknown;
  readonly isRaw?: boolean;
}

export interface ConsoleOutput {
  write(chunk: Uint8Array | string): boolean;
}

export interface TerminalConsoleOptions {
  readonly input?: ConsoleInput;
  readonly output?: ConsoleOutput;
  /** Ctrl-A x (and Ctrl-A x only): the user wants the VM stopped. */
  readonly onQuit: () => void;
  /** stdin reached end of file (only for pipes; the guest keeps running). */
  readonly onInputEnd?: () => void;
  /** Disable escape handling (e.g. for binary pipes). Default: enabled. */
  readonly escapes?: boolean;
}

const SIGNALS = ['SIGTERM', 'SIGHUP', 'SIGQUIT'] as const;
const OUTPUT_FLUSH_BYTES = 4096;

export class TerminalConsole {
  private readonly input: ConsoleInput;
  private readonly output: ConsoleOutput;
  private readonly escape = new EscapeFilter();
  private port: SerialPort | undefined;
  /** Input the UART could not take yet, oldest first. */
  private readonly pending: Uint8Array[] = [];
  private paused = false;
  private started = false;
  private rawModeSet = false;
  private readonly outBuffer = new Uint8Array(OUTPUT_FLUSH_BYTES);
  private outLength = 0;
  private flushScheduled = false;
  private readonly onData = (chunk: Buffer): void => this.receive(chunk);
  private readonly onEnd = (): void => this.options.onInputEnd?.();
  private readonly onExit = (): void => this.restoreTerminal();
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    this.stop();
    // Our listener is gone now, so the signal's default action (terminate) applies again.
    process.kill(process.pid, signal);
  };

  constructor(private readonly options: TerminalConsoleOptions) {
    this.input = options.input ?? (process.stdin as unknown as ConsoleInput);
    this.output = options.output ?? process.stdout;
  }

  /** Whether the input is an interactive terminal (raw mode and escapes apply). */
  get interactive(): boolean {
    return this.input.isTTY === true && typeof this.input.setRawMode === 'function';
  }

  /** Connects the UART and starts reading. */
  start(port: SerialPort): void {
    if (this.started) return;
    this.started = true;
    this.port = port;
    if (this.interactive) {
      this.input.setRawMode!(true);
      this.rawModeSet = true;
      process.on('exit', this.onExit);
      for (const signal of SIGNALS) process.on(signal, this.onSignal);
    }
    this.input.on('data', this.onData);
    this.input.on('end', this.onEnd);
    this.input.resume();
  }

  /** Stops reading, flushes output and restores the terminal. Safe to call more than once. */
  stop(): void {
    if (!this.started) return;
    this.started = false;
    this.input.removeListener('data', this.onData);
    this.input.removeListener('end', this.onEnd);
    this.input.pause();
    this.flush();
    this.restoreTerminal();
    process.removeListener('exit', this.onExit);
    for (const signal of SIGNALS) process.removeListener(signal, this.onSignal);
  }

  /** The UART's output sink: batches bytes and writes them on the next turn of the loop. */
  readonly writeByte = (byte: number): void => {
    this.outBuffer[this.outLength++] = byte;
    if (this.outLength === OUTPUT_FLUSH_BYTES) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  };

  /** Writes buffered guest output now. */
  flush(): void {
    this.flushScheduled = false;
    if (this.outLength === 0) return;
    // Copy: the stream may keep the chunk after write() returns.
    this.output.write(this.outBuffer.slice(0, this.outLength));
    this.outLength = 0;
  }

  /** Wire this to the UART's onInputSpace: the FIFO has room again. */
  readonly inputSpaceAvailable = (): void => {
    this.drain();
  };

  private receive(chunk: Buffer): void {
    if (this.options.escapes === false) {
      this.queue(chunk);
      return;
    }
    this.escape.filter(chunk, {
      bytes: (run) => this.queue(run),
      command: (command) => this.command(command),
    });
  }

  private command(command: EscapeCommand): void {
    if (command === 'quit') this.options.onQuit();
    else if (command === 'break') {
      this.drain();
      this.port?.sendBreak();
    } else {
      this.flush();
      this.output.write(ESCAPE_HELP);
    }
  }

  private queue(bytes: Uint8Array): void {
    this.pending.push(Uint8Array.from(bytes));
    this.drain();
  }

  private drain(): void {
    const port = this.port;
    if (!port) return;
    while (this.pending.length > 0) {
      const head = this.pending[0]!;
      const taken = port.enqueueInput(head);
      if (taken < head.length) {
        this.pending[0] = head.subarray(taken);
        if (!this.paused) {
          this.paused = true;
          this.input.pause();
        }
        return;
      }
      this.pending.shift();
    }
    if (this.paused && this.started) {
      this.paused = false;
      this.input.resume();
    }
  }

  private restoreTerminal(): void {
    if (!this.rawModeSet) return;
    this.rawModeSet = false;
    try {
      this.input.setRawMode!(false);
    } catch {
      // The terminal may already be gone (SIGHUP): nothing left to restore.
    }
  }
}
