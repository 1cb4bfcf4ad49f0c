// The queue thread behind QueueThreadDevice: it owns the device model and serves its rings
// itself. It blocks in poll(2) on the rings' kick eventfds plus one control eventfd; a kick is
// drained and the queue served synchronously (pop, handle, push used), and the call eventfd is
// written from here. The kernel wakes this thread directly from the front end's kick, so a
// request costs no hop through the main thread's event loop or libuv's pool.
//
// Commands from the main thread arrive on a MessagePort read with receiveMessageOnPort once the
// control eventfd fired (this thread never returns to its event loop while serving). They are
// applied between queue runs, so a reset, re-activation or GET_VRING_BASE never lands in the
// middle of a request.
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import type { GuestAddress } from '../memory/address.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { memoryFromDescriptors } from '../memory/memfd-memory.js';
import * as libc from '../native/libc.js';
import { POLLERR, POLLIN, POLLNVAL, poll } from '../native/socket-calls.js';
import { PollWindow } from './poll-window.js';
import type { ActivationContext } from '../virtio/device.js';
import { ControlSlot, type HostedDevice, type HostedDeviceFactory, type SharedRegion, type ThreadCommand, type ThreadEvent, type ThreadReply } from './queue-thread-protocol.js';

export interface QueueThreadInit {
  /** URL of a module exporting `createHostedDevice` (a HostedDeviceFactory). */
  readonly factory: string;
  readonly options: unknown;
  readonly controlFd: number;
  readonly control: SharedArrayBuffer;
  readonly commands: MessagePort;
  readonly replies: MessagePort;
  /** The longest busy-poll window (us; 0: off), see poll-window.ts. */
  readonly pollMaxUs: number;
}

const events = parentPort!;
const init = workerData as QueueThreadInit;
const control = new Int32Array(init.control);
const one = new Uint8Array(8);
new DataView(one.buffer).setBigUint64(0, 1n, true);
const counter = new Uint8Array(8);
/** How long the thread waits for a wake-up before it settles the device's quiet rings. */
const QUIET_IDLE_MS = 20;

// However the thread ends (stop, an uncaught error), a main thread waiting for an answer must
// not wait for its full timeout.
process.on('exit', () => {
  Atomics.store(control, ControlSlot.Gone, 1);
  Atomics.notify(control, ControlSlot.Acked);
});

function report(event: ThreadEvent): void {
  events.postMessage(event);
}

async function construct(): Promise<HostedDevice | undefined> {
  try {
    const module = (await import(init.factory)) as { createHostedDevice?: HostedDeviceFactory };
    if (typeof module.createHostedDevice !== 'function') throw new Error(`${init.factory} exports no createHostedDevice`);
    return await module.createHostedDevice(init.options);
  } catch (error) {
    // InputError (a user's mistake, e.g. a missing --write directory) stays one clean line.
    const input = error instanceof Error && error.name === 'InputError';
    report({ event: 'failed', message: error instanceof Error ? error.message : String(error), input });
    init.commands.close();
    init.replies.close();
    return undefined;
  }
}

const constructed = await construct();
if (constructed !== undefined) serve(constructed);

function serve(hosted: HostedDevice): void {
  const device = hosted.device;
  const queueCount = device.queueMaxSizes.length;
  /** Per ring: the thread's own duplicates of the front end's kick and call eventfds (-1: none). */
  const kickFds = new Array<number>(queueCount).fill(-1);
  const callFds = new Array<number>(queueCount).fill(-1);
  /** poll(2) set: control first, the device's completion eventfd if it has one, then every ring
   *  with a kick, in `pollQueues` order. */
  const completionFd = hosted.completionFd ?? -1;
  const quiet = hosted.quietQueues;
  const firstKick = completionFd >= 0 ? 2 : 1;
  let pollFds = new Uint8Array(8 * (firstKick + queueCount));
  let pollView = new DataView(pollFds.buffer);
  const pollQueues: number[] = [];
  let pollCount = 0;
  let pollDirty = true;
  let running = true;
  /** Wake-ups by a kick, and the time spent serving them (for --stats). */
  let kickWakes = 0;
  let busyMs = 0;
  const pollWindow = new PollWindow(init.pollMaxUs);
  /** The device is in busy-polling mode (its rings' notifications stay off after a run). */
  let watching = false;
  /** The device was activated once (the guest's driver is up: the warm-up gives way). */
  let activated = false;
  let warmUpSummary = '';

  const configSnapshot = (): Uint8Array => {
    const data = new Uint8Array(device.configSize);
    device.readConfig(0, data);
    return data;
  };

  report({
    event: 'ready',
    description: { deviceType: device.deviceType, queueMaxSizes: [...device.queueMaxSizes], deviceFeatures: device.deviceFeatures, configSize: device.configSize, config: configSnapshot() },
  });

  function rebuildPollSet(): void {
    pollQueues.length = 0;
    for (let i = 0; i < queueCount; i++) if (kickFds[i]! >= 0) pollQueues.push(i);
    pollCount = firstKick + pollQueues.length;
    if (pollFds.length < 8 * pollCount) {
      pollFds = new Uint8Array(8 * pollCount);
      pollView = new DataView(pollFds.buffer);
    }
    const entry = (slot: number, fd: number): void => {
      pollView.setInt32(8 * slot, fd, true);
      pollView.setInt16(8 * slot + 4, POLLIN, true);
      pollView.setInt16(8 * slot + 6, 0, true);
    };
    entry(0, init.controlFd);
    if (completionFd >= 0) entry(1, completionFd);
    pollQueues.forEach((queue, i) => entry(firstKick + i, kickFds[queue]!));
    pollDirty = false;
  }

  /** Guest RAM as this thread sees it: the same process-wide mapping, viewed from here. */
  function memoryOf(regions: readonly SharedRegion[]): GuestMemory {
    for (const r of regions) if (r.hostAddress === 0n) throw new Error(`region at 0x${r.start.toString(16)} has no host mapping`);
    return memoryFromDescriptors(regions.map((r) => ({ start: r.start as GuestAddress, size: r.size, fd: -1, fdOffset: 0, hostAddress: r.hostAddress })));
  }

  function signalCall(index: number): void {
    const fd = callFds[index] ?? -1;
    if (fd >= 0) libc.write(fd, one, 8);
  }

  function replaceFd(table: number[], index: number, fd: number): void {
    const old = table[index]!;
    table[index] = fd;
    if (old >= 0 && old !== fd) libc.close(old);
  }

  function run(command: ThreadCommand, seq: number): ThreadReply {
    // Requests finishing on other threads land before the device is reset, re-activated, asked
    // where its rings stand, or stopped.
    if (command.op === 'reset' || command.op === 'activate' || command.op === 'quiesce' || command.op === 'position' || command.op === 'stop') hosted.drain?.();
    switch (command.op) {
      case 'activate': {
        watching = false;
        activated = true;
        const context: ActivationContext = {
          memory: memoryOf(command.regions),
          features: command.features,
          queues: command.queues,
          notifyQueue: signalCall,
          notifyConfig: () => report({ event: 'config-changed' }),
          needsReset: (reason) => report({ event: 'needs-reset', reason }),
        };
        device.activate(context);
        return { seq, ok: true };
      }
      case 'reset':
        watching = false;
        device.reset();
        return { seq, ok: true };
      case 'notify':
        device.notify(command.index);
        return { seq, ok: true };
      case 'quiesce': {
        const idle = device.quiesce?.(command.index);
        // Requests are served to completion on this thread, so nothing is ever left in flight
        // between two commands; a device that still reports work pending is a bug worth a line.
        if (idle !== undefined) return { seq, ok: false, error: 'device reports requests in flight after a synchronous run' };
        return { seq, ok: true };
      }
      case 'position':
        return { seq, ok: true, position: device.queuePosition?.(command.index) };
      case 'files':
        if (!Number.isInteger(command.index) || command.index < 0 || command.index >= queueCount) {
          for (const fd of [command.kick, command.call]) if (fd >= 0) libc.close(fd);
          return { seq, ok: false, error: `queue index ${command.index} out of range` };
        }
        replaceFd(kickFds, command.index, command.kick);
        replaceFd(callFds, command.index, command.call);
        pollDirty = true;
        return { seq, ok: true };
      case 'write-config':
        device.writeConfig(command.offset, command.data);
        return { seq, ok: true, config: configSnapshot() };
      case 'summary':
        return { seq, ok: true, summary: `${hosted.summary?.() ?? ''} kickWakes=${kickWakes} threadBusyMs=${busyMs.toFixed(1)} pollHits=${pollWindow.hits} pollMisses=${pollWindow.misses} pollMissedMs=${pollWindow.missedMs.toFixed(1)}${warmUpSummary === '' ? '' : ` ${warmUpSummary}`}` };
      case 'stop':
        running = false;
        return { seq, ok: true };
    }
  }

  /** The control eventfd fired: reset it and apply what was posted. */
  function takeCommands(): void {
    libc.read(init.controlFd, counter, 8);
    applyCommands();
  }

  function applyCommands(): void {
    for (;;) {
      const received = receiveMessageOnPort(init.commands);
      if (received === undefined) return;
      const { seq, command } = received.message as { seq: number; command: ThreadCommand };
      let reply: ThreadReply;
      try {
        reply = run(command, seq);
      } catch (error) {
        reply = { seq, ok: false, error: error instanceof Error ? error.message : String(error) };
      }
      if (seq === 0) continue; // asynchronous (notify): nobody waits
      init.replies.postMessage(reply);
      Atomics.store(control, ControlSlot.Acked, seq);
      Atomics.notify(control, ControlSlot.Acked);
    }
  }

  /**
   * Busy polling: with the window open the device leaves its rings' notifications off after a
   * run, and the thread watches them for up to pollWindow.us before sleeping. True if work arrived.
   */
  function watchRings(): boolean {
    const start = performance.now();
    const deadline = start + pollWindow.us / 1000;
    for (;;) {
      if (device.hasAvailable?.() === true) {
        pollWindow.hit();
        return true;
      }
      const now = performance.now();
      if (now >= deadline) {
        pollWindow.missed(now - start);
        return false;
      }
    }
  }

  // While the front end boots its guest: the warm-up, applying commands between its rounds and
  // ending when the device is activated (or the thread stopped).
  if (hosted.warmUp !== undefined) {
    const controlOnly = new Uint8Array(8);
    const controlView = new DataView(controlOnly.buffer);
    controlView.setInt32(0, init.controlFd, true);
    controlView.setInt16(4, POLLIN, true);
    warmUpSummary = hosted.warmUp(() => {
      controlView.setInt16(6, 0, true);
      if (poll(controlOnly, 1, 0) > 0 && controlView.getInt16(6, true) !== 0) takeCommands();
      return activated || !running;
    });
  }

  /** When the last served request was done (the wait for the next one starts there). */
  let servedAt = 0;
  while (running) {
    if (pollDirty) rebuildPollSet();
    // A run that yielded with requests left: look at commands and kicks without sleeping, then go on.
    const deferred = hosted.hasDeferredWork?.() === true;
    let ringsReady = false;
    if (watching && !deferred) {
      ringsReady = watchRings();
      if (!ringsReady) {
        // Going to sleep: the driver must kick again; requests that raced that are served now.
        watching = false;
        ringsReady = device.stopPolling?.() === true;
      }
    }
    const sleep = deferred || ringsReady ? 0 : quiet?.pending() === true ? QUIET_IDLE_MS : -1;
    const n = poll(pollFds, pollCount, sleep);
    if (n < 0) {
      if (libc.lastErrno() === libc.EINTR) continue;
      report({ event: 'needs-reset', reason: `queue thread: poll failed: ${libc.errnoName(libc.lastErrno())}` });
      break;
    }
    if (n === 0 && sleep !== 0) {
      // Idle for QUIET_IDLE_MS: serve what the quiet rings hold and let the driver kick again.
      quiet?.settle();
      continue;
    }
    if (n > 0 && pollView.getInt16(6, true) !== 0) {
      takeCommands();
      // The set changed under the entries below: their kicks are still pending, poll again.
      if (pollDirty || !running) continue;
    }
    const woke = performance.now();
    if (n > 0 && completionFd >= 0 && pollView.getInt16(14, true) !== 0) {
      libc.read(completionFd, counter, 8);
      hosted.onCompletion?.();
    }
    // Busy polling on: the runs below leave notifications off for watchRings.
    if (pollWindow.us > 0 && !watching && device.startPolling !== undefined) {
      device.startPolling();
      watching = true;
    }
    let kicked = false;
    for (let slot = firstKick; n > 0 && slot < pollCount; slot++) {
      const revents = pollView.getInt16(8 * slot + 6, true);
      if (revents === 0) continue;
      const queue = pollQueues[slot - firstKick]!;
      if ((revents & POLLIN) === 0 && (revents & (POLLERR | POLLNVAL)) !== 0) {
        // Not an eventfd any more (closed under us): drop it rather than spin.
        replaceFd(kickFds, queue, -1);
        pollDirty = true;
        continue;
      }
      // Reading resets the eventfd's counter: a burst of kicks costs one run of the queue.
      libc.read(kickFds[queue]!, counter, 8);
      if (!kicked && sleep !== 0) pollWindow.woke((woke - servedAt) * 1000);
      device.notify(queue);
      kicked = true;
    }
    if (ringsReady) device.pollQueues?.();
    if (deferred) hosted.resumeDeferred?.();
    quiet?.poll();
    if (kicked) kickWakes++;
    if (kicked || ringsReady) {
      servedAt = performance.now();
      busyMs += servedAt - woke;
    }
  }

  hosted.drain?.();
  device.reset();
  for (let i = 0; i < queueCount; i++) {
    replaceFd(kickFds, i, -1);
    replaceFd(callFds, i, -1);
  }
  hosted.close?.();
  init.commands.close();
  init.replies.close();
  report({ event: 'stopped' });
}
