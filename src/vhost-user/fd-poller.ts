// Readiness of raw file descriptors (eventfds, sockets with passed descriptors) for the main
// thread. libuv cannot watch an eventfd through net.Socket (uv_guess_handle says UNKNOWN) and a
// threadpool read per kick fd would pin one of its 4 threads per queue, so one worker thread
// blocks in poll(2) over all of them and writes the ready descriptors' numbers to a socketpair
// the main thread's libuv loop watches (a socket it can watch). Measured with
// test/vhost-user/latency-probe.ts on a loaded 2-core host: kick -> call round trips of 40-90 us
// either way, but the postMessage variant hung once in ~7 runs (a kick never delivered) and
// this one never in 32.
import { Socket } from 'node:net';
import { Worker } from 'node:worker_threads';
import * as libc from '../native/libc.js';
import { SOCK_CLOEXEC, socketPair } from '../native/socket-calls.js';

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
  private readonly readySocket: Socket;
  private readonly workerEnd: number;
  private partial: Buffer = Buffer.alloc(0);
  /** Resolves once the worker thread runs its poll loop. */
  readonly ready: Promise<void>;
  private markReady!: () => void;

  constructor(private readonly onError: (message: string) => void = (m) => process.stderr.write(`${m}\n`)) {
    this.controlFd = libc.check('eventfd', libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK));
    new DataView(this.one.buffer).setBigUint64(0, 1n, true);
    const [mainEnd, workerEnd] = socketPair(SOCK_CLOEXEC);
    this.workerEnd = workerEnd;
    this.readySocket = new Socket({ fd: mainEnd, readable: true, writable: false });
    this.readySocket.on('data', (chunk: Buffer) => this.onReady(chunk));
    this.worker = new Worker(new URL('./fd-poller-worker.js', import.meta.url), { workerData: { controlFd: this.controlFd, readyFd: workerEnd } });
    this.ready = new Promise((resolve) => (this.markReady = resolve));
    this.worker.on('message', (message: unknown) => {
      if (typeof message === 'object' && message !== null && 'ready' in message) {
        this.markReady();
      } else if (typeof message === 'object' && message !== null && 'error' in message) {
        onError(String((message as { error: unknown }).error));
      }
    });
    this.exited = new Promise((resolve) => this.worker.once('exit', () => resolve()));
  }

  private onReady(chunk: Buffer): void {
    let data = chunk;
    if (this.partial.length > 0) {
      data = Buffer.concat([this.partial, chunk]);
      this.partial = Buffer.alloc(0);
    }
    const whole = data.length - (data.length % 4);
    for (let at = 0; at < whole; at += 4) {
      const callback = this.callbacks.get(data.readInt32LE(at));
      if (callback === undefined) continue;
      try {
        callback();
      } catch (error) {
        // A watcher's bug must not take the process (and every other device) down.
        this.onError(`fd poller: callback for descriptor ${data.readInt32LE(at)} failed: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    if (whole < data.length) this.partial = Buffer.from(data.subarray(whole));
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
    libc.close(this.workerEnd);
    this.readySocket.destroy();
  }

  private command(command: PollerCommand): void {
    if (this.stopped && command.op !== 'stop') return;
    this.worker.postMessage(command);
    libc.write(this.controlFd, this.one, 8);
  }
}
