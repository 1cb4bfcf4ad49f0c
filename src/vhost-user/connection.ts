// Framing of vhost-user messages on a connected Unix stream socket. Reads are non-blocking and
// driven by FdPoller readiness; a message is assembled from exactly its header and payload
// bytes so descriptors (which ride on the first byte of a sendmsg) are never attributed to
// the wrong message. A malformed frame closes the connection with one logged reason.
import * as libc from '../native/libc.js';
import { MSG_DONTWAIT, MessageBuffers, SHUT_RDWR, shutdown } from '../native/socket-calls.js';
import type { FdPoller } from './fd-poller.js';
import { FLAG_REPLY, FLAG_VERSION, FLAG_VERSION_MASK, HEADER_SIZE, MAX_FDS, MAX_PAYLOAD, requestName } from './protocol.js';

export const CLOSED_BY_PEER = 'front end disconnected';
export const CLOSED_BY_SERVER = 'server closed';

export interface Message {
  readonly request: number;
  readonly flags: number;
  /** The payload, valid only during the handler call. */
  readonly payload: DataView;
  /** Descriptors attached; the handler takes the ones it keeps out (sets them to -1). */
  readonly fds: number[];
}

export class ProtocolError extends Error {
  readonly kind = 'vhost-user-protocol' as const;
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

export class VhostUserConnection {
  private readonly input = new MessageBuffers(HEADER_SIZE + MAX_PAYLOAD, MAX_FDS * 2);
  private readonly output = new MessageBuffers(HEADER_SIZE + MAX_PAYLOAD, 1);
  private readonly outputView = new DataView(this.output.data.buffer, this.output.data.byteOffset);
  private readonly inputView = new DataView(this.input.data.buffer, this.input.data.byteOffset);
  private have = 0;
  private closed = false;
  private waiting = false;
  private readonly done: Promise<string>;
  private resolveDone!: (reason: string) => void;

  constructor(
    readonly fd: number,
    private readonly poller: FdPoller,
    /** May return a promise (a request that waits, e.g. for in-flight I/O): reading pauses until it settles. */
    private readonly handler: (message: Message) => void | Promise<void>,
  ) {
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    poller.watch(fd, 'once', () => this.onReadable());
  }

  /** Resolves with the reason when the connection is closed (by either side). */
  get closedReason(): Promise<string> {
    return this.done;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private onReadable(): void {
    if (this.closed || this.waiting) return;
    try {
      for (;;) {
        const need = this.have < HEADER_SIZE ? HEADER_SIZE : HEADER_SIZE + this.inputView.getUint32(8, true);
        const n = this.input.receive(this.fd, this.have, need - this.have, MSG_DONTWAIT);
        if (n < 0) {
          const errno = libc.lastErrno();
          if (errno === libc.EAGAIN) break;
          if (errno === libc.EINTR) continue;
          this.close(`receive failed: ${libc.errnoName(errno)}`);
          return;
        }
        if (n === 0) {
          this.close(CLOSED_BY_PEER);
          return;
        }
        if (this.input.truncated) throw new ProtocolError('too many descriptors in one message');
        this.have += n;
        if (this.have === HEADER_SIZE) {
          const flags = this.inputView.getUint32(4, true);
          const size = this.inputView.getUint32(8, true);
          if ((flags & FLAG_VERSION_MASK) !== FLAG_VERSION) throw new ProtocolError(`unsupported protocol version in flags 0x${flags.toString(16)}`);
          if (size > MAX_PAYLOAD) throw new ProtocolError(`${requestName(this.inputView.getUint32(0, true))}: payload of ${size} bytes exceeds ${MAX_PAYLOAD}`);
        }
        if (this.have >= HEADER_SIZE && this.have === HEADER_SIZE + this.inputView.getUint32(8, true)) {
          const pending = this.dispatch();
          if (pending !== undefined) {
            // Messages are handled in order: read nothing more until this one is done.
            this.waiting = true;
            pending.then(
              () => this.resume(),
              (error: unknown) => this.close(error instanceof Error ? error.message : String(error)),
            );
            return;
          }
        }
        if (this.closed) return;
      }
      this.poller.rearm(this.fd);
    } catch (error) {
      this.close(error instanceof Error ? error.message : String(error));
    }
  }

  private resume(): void {
    this.waiting = false;
    this.onReadable();
  }

  private dispatch(): Promise<void> | undefined {
    const request = this.inputView.getUint32(0, true);
    const flags = this.inputView.getUint32(4, true);
    const size = this.inputView.getUint32(8, true);
    const fds = this.input.fds.splice(0);
    this.have = 0;
    try {
      // The payload view is only valid now: an async handler must read it before awaiting.
      return this.handler({ request, flags, payload: new DataView(this.input.data.buffer, this.input.data.byteOffset + HEADER_SIZE, size), fds }) ?? undefined;
    } finally {
      for (const fd of fds) if (fd >= 0) libc.close(fd);
    }
  }

  /** Sends a reply: the header echoes the request with REPLY set. */
  reply(request: number, payload: (view: DataView) => number): void {
    if (this.closed) return;
    const size = payload(new DataView(this.output.data.buffer, this.output.data.byteOffset + HEADER_SIZE, MAX_PAYLOAD));
    this.outputView.setUint32(0, request, true);
    this.outputView.setUint32(4, FLAG_VERSION | FLAG_REPLY, true);
    this.outputView.setUint32(8, size, true);
    const total = HEADER_SIZE + size;
    // Replies are tiny; a full socket buffer means the front end stopped reading: give up.
    const n = this.output.send(this.fd, total, [], MSG_DONTWAIT);
    if (n !== total) this.close(`reply to ${requestName(request)} failed: ${n < 0 ? libc.errnoName(libc.lastErrno()) : 'short write'}`);
  }

  replyU64(request: number, value: bigint): void {
    this.reply(request, (view) => {
      view.setBigUint64(0, value, true);
      return 8;
    });
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.poller.unwatch(this.fd);
    for (const fd of this.input.fds.splice(0)) libc.close(fd);
    shutdown(this.fd, SHUT_RDWR);
    libc.close(this.fd);
    this.resolveDone(reason);
  }
}
