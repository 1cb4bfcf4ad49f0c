// A device model hosted in a thread of its own ("queue thread"), seen from the main thread as a
// BackendDevice. The main thread keeps the vhost-user protocol (VhostUserBackend); the queue
// thread waits on the rings' kick eventfds itself, serves the queues synchronously and writes
// the call eventfds, so a request never passes through the main thread's event loop. The
// device model is the same class that runs in process; only where it runs changes.
//
// Every command but notify is synchronous: it is posted, the thread's control eventfd is
// written, and the main thread blocks in Atomics.wait until the thread acknowledges it. The
// thread applies commands between queue runs, and a run yields after a bounded number of
// requests (hosted-fs: 64) even while the guest keeps its ring full, so a wait lasts at most
// that many requests (each bounded by the guest's request size and the host's I/O). A reset
// therefore never races a request, and
// when reset() returns the thread no longer touches the old guest memory mapping (the backend
// unmaps it right after).
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { InputError } from '../common/errors.js';
import * as libc from '../native/libc.js';
import { fcntl } from '../native/socket-calls.js';
import type { ActivationContext } from '../virtio/device.js';
import type { QueuePosition } from '../virtio/devices/queue-device.js';
import type { QueueStart } from '../virtio/queue/split-queue.js';
import type { BackendDevice, VringFiles } from './backend.js';
import { CONTROL_SLOTS, ControlSlot, type HostedDescription, type SharedQueueStart, type ThreadCommand, type ThreadEvent, type ThreadReply } from './queue-thread-protocol.js';
import type { QueueThreadInit } from './queue-thread-worker.js';

const F_DUPFD_CLOEXEC = 1030;
/** How long a synchronous command may wait before a line is logged about it (ms). */
const COMMAND_TIMEOUT_MS = 30_000;

export class QueueThreadError extends Error {
  readonly kind = 'queue-thread' as const;
  constructor(message: string) {
    super(message);
    this.name = 'QueueThreadError';
  }
}

export interface QueueThreadOptions {
  /** Where lines about the thread go (default stderr). */
  readonly log?: (line: string) => void;
  /** The longest busy-poll window of the thread (us, default DEFAULT_POLL_US; 0: off), see poll-window.ts. */
  readonly pollUs?: number;
}

/** Busy polling's longest window unless told otherwise (us). 2 ms, not KVM's 200 us: under a
 *  QEMU TCG guest a 1 MiB buffered write is three requests 0.1-1.3 ms apart, and a sleeping
 *  thread pays a kick and a wake-up for each. In bench:virtiofs that shows on seqwrite-1m only,
 *  and barely: against C virtiofsd 0.90 at 200 us and 1.00 at 2000 us in two full sliced runs,
 *  where novm against itself spread 0.96-1.01 (docs/virtiofs-metadata.md, "Seventh session").
 *  The window still adapts: an idle guest costs no spinning, a streaming one up to the
 *  thread's core (`--poll-us 200` is the frugal setting). */
export const DEFAULT_POLL_US = 2000;

export class QueueThreadDevice implements BackendDevice {
  readonly deviceType: number;
  readonly queueMaxSizes: readonly number[];
  readonly deviceFeatures: bigint;
  readonly configSize: number;
  private config: Uint8Array;
  private readonly control: Int32Array;
  private seq = 0;
  private context: ActivationContext | undefined;
  private alive = true;
  private readonly exited: Promise<void>;
  private readonly one = new Uint8Array(8);
  private readonly log: (line: string) => void;

  private constructor(
    private readonly worker: Worker,
    private readonly commands: MessagePort,
    private readonly replies: MessagePort,
    private readonly controlFd: number,
    sharedControl: SharedArrayBuffer,
    description: HostedDescription,
    options: QueueThreadOptions,
  ) {
    this.deviceType = description.deviceType;
    this.queueMaxSizes = description.queueMaxSizes;
    this.deviceFeatures = description.deviceFeatures;
    this.configSize = description.configSize;
    this.config = description.config;
    this.control = new Int32Array(sharedControl);
    this.log = options.log ?? ((line) => process.stderr.write(`${line}\n`));
    new DataView(this.one.buffer).setBigUint64(0, 1n, true);
    worker.on('message', (message: ThreadEvent) => this.onEvent(message));
    // An uncaught error in the thread must not become an unhandled 'error' event here (that
    // would end the process and every other connection with it).
    worker.on('error', (error) => this.log(`queue thread failed: ${error.message}`));
    this.exited = new Promise((resolve) => worker.once('exit', () => {
      this.alive = false;
      process.off('exit', this.onProcessExit);
      resolve();
    }));
    process.on('exit', this.onProcessExit);
  }

  /** A thread blocked in poll(2) would keep process.exit() from finishing: wake it to stop. */
  private readonly onProcessExit = (): void => {
    this.post({ op: 'stop' }, 0);
  };

  /**
   * Starts a queue thread that builds its device with `createHostedDevice(options)` exported by
   * the module at `factory`; resolves once the device exists. A construction error that was the
   * user's (InputError) is rethrown as an InputError.
   */
  static async start(factory: URL, options: unknown, threadOptions: QueueThreadOptions = {}): Promise<QueueThreadDevice> {
    const controlFd = libc.check('eventfd', libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK));
    const sharedControl = new SharedArrayBuffer(4 * CONTROL_SLOTS);
    const commandChannel = new MessageChannel();
    const replyChannel = new MessageChannel();
    const init: QueueThreadInit = { factory: factory.href, options, controlFd, control: sharedControl, commands: commandChannel.port2, replies: replyChannel.port1, pollMaxUs: threadOptions.pollUs ?? DEFAULT_POLL_US };
    const worker = new Worker(new URL('./queue-thread-worker.js', import.meta.url), { workerData: init, transferList: [commandChannel.port2, replyChannel.port1] });
    try {
      const description = await new Promise<HostedDescription>((resolve, reject) => {
        const onMessage = (event: ThreadEvent): void => {
          if (event.event === 'ready') resolve(event.description);
          else if (event.event === 'failed') reject(event.input ? new InputError(event.message) : new QueueThreadError(`queue thread: ${event.message}`));
        };
        worker.on('message', onMessage);
        worker.once('error', (error) => reject(new QueueThreadError(`queue thread: ${error.message}`)));
        worker.once('exit', (code) => reject(new QueueThreadError(`queue thread exited (${code}) before its device was ready`)));
      });
      worker.removeAllListeners('message');
      worker.removeAllListeners('error');
      worker.removeAllListeners('exit');
      return new QueueThreadDevice(worker, commandChannel.port1, replyChannel.port2, controlFd, sharedControl, description, threadOptions);
    } catch (error) {
      await worker.terminate();
      commandChannel.port1.close();
      replyChannel.port2.close();
      libc.close(controlFd);
      throw error;
    }
  }

  private onEvent(event: ThreadEvent): void {
    if (event.event === 'needs-reset') this.context?.needsReset(event.reason);
    else if (event.event === 'config-changed') this.context?.notifyConfig();
  }

  // ---- BackendDevice ---------------------------------------------------------------------------

  readConfig(offset: number, data: Uint8Array): void {
    data.fill(0);
    if (offset < 0 || offset >= this.config.length) return;
    data.set(this.config.subarray(offset, Math.min(this.config.length, offset + data.length)));
  }

  writeConfig(offset: number, data: Uint8Array): void {
    const reply = this.call({ op: 'write-config', offset, data: data.slice() });
    if (reply?.ok === true && reply.config !== undefined) this.config = reply.config;
  }

  activate(context: ActivationContext): void {
    this.context = context;
    const regions = context.memory.regions.map((r) => ({ start: r.start as number, size: r.size, hostAddress: r.hostAddress }));
    if (regions.some((r) => r.hostAddress === 0n)) {
      context.needsReset('guest memory has no host mapping the queue thread could use');
      return;
    }
    const queues = context.queues.map((q): SharedQueueStart | undefined => {
      if (q === undefined) return undefined;
      const start = q as QueueStart;
      return {
        size: q.size, descAddr: q.descAddr, driverAddr: q.driverAddr, deviceAddr: q.deviceAddr,
        ...(start.nextAvail === undefined ? {} : { nextAvail: start.nextAvail }),
        ...(start.nextUsed === undefined ? {} : { nextUsed: start.nextUsed }),
      };
    });
    const reply = this.call({ op: 'activate', regions, features: context.features, queues });
    if (reply !== undefined && !reply.ok) context.needsReset(`queue thread: ${reply.error}`);
  }

  notify(queueIndex: number): void {
    this.post({ op: 'notify', index: queueIndex }, 0);
  }

  reset(): void {
    this.call({ op: 'reset' });
    this.context = undefined;
  }

  quiesce(index: number): Promise<void> | undefined {
    const reply = this.call({ op: 'quiesce', index });
    if (reply !== undefined && !reply.ok) this.log(`queue thread: quiesce ${index}: ${reply.error}`);
    return undefined;
  }

  queuePosition(index: number): QueuePosition | undefined {
    const reply = this.call({ op: 'position', index });
    return reply?.ok === true ? reply.position : undefined;
  }

  /** The backend hands over each ring's descriptors: the thread gets duplicates it owns. */
  setVringFiles(index: number, files: VringFiles): void {
    const kick = duplicate(files.kick);
    const call = duplicate(files.call);
    const reply = this.call({ op: 'files', index, kick, call });
    if (reply === undefined) {
      // The thread is gone: nobody else will close them.
      if (kick >= 0) libc.close(kick);
      if (call >= 0) libc.close(call);
    }
  }

  // ---- host side -------------------------------------------------------------------------------

  /** One line of the device's counters, read from its thread. */
  summary(): string {
    const reply = this.call({ op: 'summary' });
    return reply?.ok === true ? (reply.summary ?? '') : 'queue thread not running';
  }

  /** Stops the thread (after resetting the device); resolves once it has exited. */
  async close(): Promise<void> {
    if (this.alive) {
      this.call({ op: 'stop' });
      const timer = setTimeout(() => void this.worker.terminate(), 5000);
      await this.exited;
      clearTimeout(timer);
    }
    this.commands.close();
    this.replies.close();
    if (this.controlFd >= 0) libc.close(this.controlFd);
  }

  private post(command: ThreadCommand, seq: number): void {
    if (!this.alive) return;
    this.commands.postMessage({ seq, command });
    libc.write(this.controlFd, this.one, 8);
  }

  /** Runs a command on the thread and waits for its answer; undefined if the thread is gone. */
  private call(command: ThreadCommand): ThreadReply | undefined {
    if (!this.alive) return undefined;
    const seq = ++this.seq;
    this.post(command, seq);
    const started = Date.now();
    let deadline = started + COMMAND_TIMEOUT_MS;
    for (;;) {
      const acked = Atomics.load(this.control, ControlSlot.Acked);
      if (acked === seq) break;
      if (Atomics.load(this.control, ControlSlot.Gone) === 1) {
        this.alive = false;
        return undefined;
      }
      if (Date.now() >= deadline) {
        // Runs yield every few requests, so this is a host call that does not return (a hung
        // file system): terminate() could not interrupt it either. Keep waiting, and say so.
        this.log(`queue thread: still no answer to '${command.op}' after ${((Date.now() - started) / 1000).toFixed(0)} s`);
        deadline = Date.now() + COMMAND_TIMEOUT_MS;
      }
      Atomics.wait(this.control, ControlSlot.Acked, acked, 1000);
    }
    for (;;) {
      const received = receiveMessageOnPort(this.replies);
      if (received === undefined) return undefined;
      const reply = received.message as ThreadReply;
      if (reply.seq === seq) return reply;
    }
  }
}

function duplicate(fd: number): number {
  if (fd < 0) return -1;
  return libc.check('fcntl(F_DUPFD_CLOEXEC)', fcntl(fd, F_DUPFD_CLOEXEC, 0));
}
