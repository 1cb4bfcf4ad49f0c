// Readiness of raw file descriptors (eventfds, sockets with passed descriptors) for the main
// thread. libuv cannot watch an eventfd through net.Socket (uv_guess_handle says UNKNOWN) and a
// threadpool read per kick fd would pin one of its 4 threads per queue, so one worker thread
// blocks in poll(2) over all of them and posts the ready descriptors.
import { Worker } from 'node:worker_threads';
import * as libc from '../native/libc.js';

export type PollerCommand =
  | { op: 'watch'; fd: number; eventfd: boolean }
  | { op: 'unwatch'; fd: number }
  | { op: 'rearm'; fd: number }
  | { op: 'stop' };

type Callback = () => void;

export class FdPoller {
  private readonly worker: Worker;
  private readonly controlFd: number;
  private readonly callbacks = new Map<number, Callback>();
  private readonly one = new Uint8Array(8);
  private stopped = false;
  private readonly exited: Promise<void>;
  /** Resolves once the worker thread runs its poll loop. */
  readonly ready: Promise<void>;
  private markReady!: () => void;

  constructor(onError: (message: string) => void = (m) => process.stderr.write(`${m}\n`)) {
    this.controlFd = libc.check('eventfd', libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK));
    new DataView(this.one.buffer).setBigUint64(0, 1n, true);
    this.worker = new Worker(new URL('./fd-poller-worker.js', import.meta.url), { workerData: { controlFd: this.controlFd } });
    this.ready = new Promise((resolve) => (this.markReady = resolve));
    this.worker.on('message', (message: unknown) => {
      if (Array.isArray(message)) {
        for (const fd of message as number[]) this.callbacks.get(fd)?.();
      } else if (typeof message === 'object' && message !== null && 'ready' in message) {
        this.markReady();
      } else if (typeof message === 'object' && message !== null && 'error' in message) {
        onError(String((message as { error: unknown }).error));
      }
    });
    this.exited = new Promise((resolve) => this.worker.once('exit', () => resolve()));
  }

  /**
   * Calls `callback` whenever `fd` is readable. An eventfd is drained by the poller and stays
   * watched; any other descriptor is reported once per rearm().
   */
  watch(fd: number, kind: 'eventfd' | 'once', callback: Callback): void {
    this.callbacks.set(fd, callback);
    this.command({ op: 'watch', fd, eventfd: kind === 'eventfd' });
  }

  rearm(fd: number): void {
    if (this.callbacks.has(fd)) this.command({ op: 'rearm', fd });
  }

  /** Stops watching; call before closing the descriptor. */
  unwatch(fd: number): void {
    if (!this.callbacks.delete(fd)) return;
    this.command({ op: 'unwatch', fd });
  }

  /** Ends the worker thread; resolves when it has exited. */
  async stop(): Promise<void> {
    if (!this.stopped) {
      this.stopped = true;
      this.command({ op: 'stop' });
    }
    await this.exited;
    libc.close(this.controlFd);
  }

  private command(command: PollerCommand): void {
    if (this.stopped && command.op !== 'stop') return;
    this.worker.postMessage(command);
    libc.write(this.controlFd, this.one, 8);
  }
}
