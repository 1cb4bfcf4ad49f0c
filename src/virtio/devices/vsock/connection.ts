// One vsock stream between a guest port and a host Unix socket, with the credit accounting of
// virtio 1.2 section 5.10.6.3: each side advertises buf_alloc (its receive buffer) and fwd_cnt
// (bytes it has consumed); a sender may have at most buf_alloc - (tx_cnt - fwd_cnt) bytes in
// flight. All counters are u32 and wrap.
import type { Socket } from 'node:net';

/** Receive buffer novm advertises per connection: what a guest may send ahead of the socket. */
export const HOST_BUF_ALLOC = 256 * 1024;
/** Host-to-guest bytes queued per connection before the Unix socket is paused. */
export const HOST_PENDING_LIMIT = 256 * 1024;

export type ConnectionState =
  /** Guest sent REQUEST; the Unix socket is connecting. */
  | 'connecting-host'
  /** Host client sent CONNECT; REQUEST is queued or sent to the guest, waiting for RESPONSE. */
  | 'connecting-guest'
  | 'established'
  /** SHUTDOWN(both) or RST sent, or the socket closed: waiting for the last packets. */
  | 'closing';

export class VsockConnection {
  state: ConnectionState;
  /** Guest-to-host bytes received (u32). */
  recvCnt = 0;
  /** Guest-to-host bytes handed to the Unix socket's kernel buffer (u32): our fwd_cnt. */
  fwdCnt = 0;
  /** fwd_cnt the guest last heard from us. */
  reportedFwdCnt = 0;
  /** Host-to-guest bytes sent (u32). */
  txCnt = 0;
  peerBufAlloc = 0;
  peerFwdCnt = 0;
  /** Host-to-guest data not sent yet. */
  readonly pending: Buffer[] = [];
  pendingOffset = 0;
  pendingBytes = 0;
  paused = false;
  /** The host end finished sending (EOF) or went away. */
  hostEnded = false;
  /** The host end half-closed (EOF) but may still read: SHUTDOWN(SEND) goes to the guest. */
  hostEof = false;
  halfShutdownQueued = false;
  /** A SHUTDOWN or RST was queued for the guest. */
  shutdownQueued = false;
  creditRequested = false;
  /** In the queue of connections that have data or control for the guest. */
  queued = false;
  /** Host-initiated connections: what to run when the guest accepts. */
  onEstablished: ((hostPort: number) => void) | undefined;
  /** Cancels the pending connect/close timeout, if any. */
  cancelTimer: (() => void) | undefined;

  constructor(
    readonly hostPort: number,
    readonly guestPort: number,
    readonly socket: Socket,
    state: ConnectionState,
  ) {
    this.state = state;
  }

  /** Bytes the guest can still take (5.10.6.3.1). */
  peerCredit(): number {
    const inFlight = (this.txCnt - this.peerFwdCnt) >>> 0;
    return inFlight >= this.peerBufAlloc ? 0 : this.peerBufAlloc - inFlight;
  }

  /** Bytes the guest has sent that the socket has not taken yet. */
  unforwarded(): number {
    return (this.recvCnt - this.fwdCnt) >>> 0;
  }

  /** Takes up to `max` pending bytes, as one contiguous view (the caller copies it out). */
  peekPending(max: number): Buffer | undefined {
    const head = this.pending[0];
    if (head === undefined) return undefined;
    const n = Math.min(max, head.length - this.pendingOffset);
    return head.subarray(this.pendingOffset, this.pendingOffset + n);
  }

  consumePending(n: number): void {
    this.pendingOffset += n;
    this.pendingBytes -= n;
    this.txCnt = (this.txCnt + n) >>> 0;
    const head = this.pending[0];
    if (head !== undefined && this.pendingOffset >= head.length) {
      this.pending.shift();
      this.pendingOffset = 0;
    }
  }
}
