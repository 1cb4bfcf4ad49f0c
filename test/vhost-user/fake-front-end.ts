// A fake vhost-user front end for tests: speaks the wire format over one end of a socketpair,
// sends descriptors, and waits for replies without blocking the event loop (the back end runs
// in the same process).
import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import * as libc from '../../src/native/libc.js';
import { MSG_DONTWAIT, MessageBuffers, connect, unixAddress } from '../../src/native/socket-calls.js';
import { FLAG_NEED_REPLY, FLAG_VERSION, HEADER_SIZE } from '../../src/vhost-user/protocol.js';

/** How many descriptors this process has open (leak checks). */
export function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** This process's open descriptors as "fd:target" (leak checks that name what leaked). */
export function fdTargets(): string[] {
  return readdirSync('/proc/self/fd').map((n) => {
    try {
      return `${n}:${readlinkSync(`/proc/self/fd/${n}`)}`;
    } catch {
      return `${n}:?`;
    }
  });
}

export interface Reply {
  readonly request: number;
  readonly flags: number;
  readonly payload: DataView;
}

export class FakeFrontEnd {
  private readonly out = new MessageBuffers(8192, 32);
  private readonly input = new MessageBuffers(8192, 16);

  constructor(readonly fd: number) {}

  /** Connects the Unix stream socket `fd` to a back end listening at `path` (waiting up to 5 s
   *  for it to appear) and speaks for it. */
  static async connectTo(fd: number, path: string): Promise<FakeFrontEnd> {
    for (let i = 0; i < 200 && !existsSync(path); i++) await sleep(25);
    const address = unixAddress(path);
    libc.check('connect', connect(fd, address, address.length));
    return new FakeFrontEnd(fd);
  }

  /** Sends a raw message; `size` overrides the header's size field (for lies). */
  send(request: number, payload: Uint8Array, fds: readonly number[] = [], options: { needReply?: boolean; size?: number; flags?: number } = {}): void {
    const view = new DataView(this.out.data.buffer, this.out.data.byteOffset);
    view.setUint32(0, request, true);
    view.setUint32(4, options.flags ?? (FLAG_VERSION | (options.needReply === true ? FLAG_NEED_REPLY : 0)), true);
    view.setUint32(8, options.size ?? payload.length, true);
    this.out.data.set(payload, HEADER_SIZE);
    const n = this.out.send(this.fd, HEADER_SIZE + payload.length, fds, 0);
    if (n !== HEADER_SIZE + payload.length) throw new Error(`send failed: ${n} errno ${libc.lastErrno()}`);
  }

  /** Waits for one reply; undefined if the back end closed the connection or on timeout. */
  async receive(timeoutMs = 2000): Promise<Reply | undefined> {
    const deadline = Date.now() + timeoutMs;
    let have = 0;
    while (Date.now() < deadline) {
      const need = have < HEADER_SIZE ? HEADER_SIZE : HEADER_SIZE + new DataView(this.input.data.buffer, this.input.data.byteOffset).getUint32(8, true);
      if (have === need && have >= HEADER_SIZE) break;
      const n = this.input.receive(this.fd, have, need - have, MSG_DONTWAIT);
      if (n === 0) return undefined;
      if (n < 0) {
        await sleep(2);
        continue;
      }
      have += n;
    }
    if (have < HEADER_SIZE) return undefined;
    const view = new DataView(this.input.data.buffer, this.input.data.byteOffset);
    const size = view.getUint32(8, true);
    if (have < HEADER_SIZE + size) return undefined;
    return { request: view.getUint32(0, true), flags: view.getUint32(4, true), payload: new DataView(this.input.data.slice(HEADER_SIZE, HEADER_SIZE + size).buffer) };
  }

  /** True once the back end has closed its end. */
  async closedByPeer(timeoutMs = 2000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const n = this.input.receive(this.fd, 0, 1, MSG_DONTWAIT);
      if (n === 0) return true;
      if (n < 0 && libc.lastErrno() !== libc.EAGAIN) return true;
      await sleep(2);
    }
    return false;
  }
}

export function u64(value: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, value, true);
  return b;
}

export function u32s(...values: number[]): Uint8Array {
  const b = new Uint8Array(4 * values.length);
  values.forEach((v, i) => new DataView(b.buffer).setUint32(4 * i, v, true));
  return b;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
