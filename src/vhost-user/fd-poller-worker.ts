// The thread behind FdPoller: blocks in poll(2) on the watched descriptors and tells the main
// thread which ones became ready. Eventfds (vhost-user kicks) are drained here, so a burst of
// kicks costs one message; other descriptors (sockets) are reported once and then left out
// of the set until the main thread re-arms them, so level-triggered readiness cannot spin.
import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import * as libc from '../native/libc.js';
import { POLLIN, poll } from '../native/socket-calls.js';
import type { PollerCommand } from './fd-poller.js';

const port = parentPort!;
const { controlFd, readyFd } = workerData as { controlFd: number; readyFd: number };
/** Ready descriptors go to the main thread as little-endian int32s on a socket it watches. */
let readyBytes = new Uint8Array(64);
/** fd -> true for eventfds (drain and keep watching), false for one-shot descriptors. */
const watched = new Map<number, boolean>();
const armed = new Set<number>();
const counter = new Uint8Array(8);
let fdsBuffer = new Uint8Array(8 * 16);
let running = true;

function applyCommands(): void {
  for (;;) {
    const received = receiveMessageOnPort(port as MessagePort);
    if (received === undefined) return;
    const command = received.message as PollerCommand;
    switch (command.op) {
      case 'watch':
        watched.set(command.fd, command.eventfd);
        armed.add(command.fd);
        break;
      case 'unwatch':
        watched.delete(command.fd);
        armed.delete(command.fd);
        break;
      case 'rearm':
        if (watched.has(command.fd)) armed.add(command.fd);
        break;
      case 'stop':
        running = false;
        break;
    }
  }
}

const order: number[] = [];
port.postMessage({ ready: true });
while (running) {
  order.length = 0;
  order.push(controlFd);
  for (const fd of armed) order.push(fd);
  if (fdsBuffer.length < 8 * order.length) fdsBuffer = new Uint8Array(16 * order.length);
  const view = new DataView(fdsBuffer.buffer);
  order.forEach((fd, i) => {
    view.setInt32(8 * i, fd, true);
    view.setInt16(8 * i + 4, POLLIN, true);
    view.setInt16(8 * i + 6, 0, true);
  });
  const n = poll(fdsBuffer, order.length, -1);
  if (n < 0) {
    if (libc.lastErrno() === libc.EINTR) continue;
    port.postMessage({ error: `poll failed: errno ${libc.lastErrno()}` });
    break;
  }
  const ready: number[] = [];
  for (let i = 0; i < order.length; i++) {
    const revents = view.getInt16(8 * i + 6, true);
    if (revents === 0) continue;
    const fd = order[i]!;
    if (fd === controlFd) {
      libc.read(controlFd, counter, 8);
      continue;
    }
    if (watched.get(fd) === true) {
      // An eventfd: reading resets its counter. POLLERR/POLLNVAL (closed under us) would spin,
      // so such a descriptor is reported once and dropped.
      if (libc.read(fd, counter, 8) !== 8 && (revents & POLLIN) === 0) armed.delete(fd);
    } else {
      armed.delete(fd);
    }
    ready.push(fd);
  }
  if (ready.length > 0) {
    if (readyBytes.length < 4 * ready.length) readyBytes = new Uint8Array(8 * ready.length);
    const out = new DataView(readyBytes.buffer);
    ready.forEach((fd, i) => out.setInt32(4 * i, fd, true));
    let sent = 0;
    while (sent < 4 * ready.length) {
      const n = libc.write(readyFd, readyBytes.subarray(sent), 4 * ready.length - sent);
      if (n < 0) {
        if (libc.lastErrno() === libc.EINTR) continue;
        port.postMessage({ error: `poller: cannot report ready descriptors: errno ${libc.lastErrno()}` });
        running = false;
        break;
      }
      sent += n;
    }
  }
  applyCommands();
}
port.postMessage({ stopped: true });
