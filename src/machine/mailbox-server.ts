// The main thread's side of the vCPU mailboxes: waits (without blocking the event loop) for
// forwarded PIO/MMIO accesses and dispatches them to the main thread's buses.
import type { Bus } from '../bus/bus.js';
import { AccessKind, MAILBOX, MAILBOX_BYTES, MAILBOX_DATA_BYTE_OFFSET } from './shared-state.js';

export class MailboxServer {
  readonly buffer = new SharedArrayBuffer(MAILBOX_BYTES);
  private readonly words = new Int32Array(this.buffer);
  private readonly bytes = new Uint8Array(this.buffer, MAILBOX_DATA_BYTE_OFFSET, 8);
  private readonly scratch: Uint8Array[] = [0, 1, 2, 3, 4, 5, 6, 7, 8].map((n) => new Uint8Array(n));
  private closed = false;
  private seen = 0;
  handled = 0;

  constructor(private readonly pio: Bus, private readonly mmio: Bus, private readonly onError: (error: unknown) => void) {}

  start(): void {
    void this.serve();
  }

  close(): void {
    this.closed = true;
    Atomics.store(this.words, MAILBOX.closed, 1);
    Atomics.notify(this.words, MAILBOX.responseSeq);
    Atomics.notify(this.words, MAILBOX.requestSeq);
  }

  private async serve(): Promise<void> {
    while (!this.closed) {
      const wait = Atomics.waitAsync(this.words, MAILBOX.requestSeq, this.seen);
      if (wait.async) await wait.value;
      if (this.closed) return;
      const seq = Atomics.load(this.words, MAILBOX.requestSeq);
      if (seq === this.seen) continue;
      this.seen = seq;
      try {
        this.dispatch();
      } catch (error) {
        this.onError(error);
      }
      Atomics.add(this.words, MAILBOX.responseSeq, 1);
      Atomics.notify(this.words, MAILBOX.responseSeq);
    }
  }

  /** Copies the written bytes out of the mailbox without allocating a view per access. */
  private copyIn(buffer: Uint8Array): void {
    for (let i = 0; i < buffer.length; i++) buffer[i] = this.bytes[i]!;
  }

  private dispatch(): void {
    this.handled++;
    const kind = Atomics.load(this.words, MAILBOX.kind) as AccessKind;
    const size = Atomics.load(this.words, MAILBOX.size);
    const address = (Atomics.load(this.words, MAILBOX.addressLow) >>> 0) + (Atomics.load(this.words, MAILBOX.addressHigh) >>> 0) * 0x1_0000_0000;
    const buffer = this.scratch[size];
    if (buffer === undefined) return;
    switch (kind) {
      case AccessKind.PioRead:
        this.pio.read(address, buffer);
        this.bytes.set(buffer);
        break;
      case AccessKind.PioWrite:
        this.copyIn(buffer);
        this.pio.write(address, buffer);
        break;
      case AccessKind.MmioRead:
        this.mmio.read(address, buffer);
        this.bytes.set(buffer);
        break;
      case AccessKind.MmioWrite:
        this.copyIn(buffer);
        this.mmio.write(address, buffer);
        break;
    }
  }
}
