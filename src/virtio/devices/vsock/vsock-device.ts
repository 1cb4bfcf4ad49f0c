// virtio-vsock (virtio 1.2 section 5.10): stream sockets between the guest and host Unix
// sockets, Firecracker's "hybrid vsock" way. Queue 0 carries packets to the guest, queue 1
// packets from it, queue 2 events (unused: novm never sends TRANSPORT_RESET).
// The guest is hostile: every header field is checked, a guest that overruns the credit we
// advertised gets its connection reset, and a guest cannot open more than maxConnections.
import type { Socket } from 'node:net';
import type { GuestMemory } from '../../../memory/guest-memory.js';
import type { DescriptorChain } from '../../queue/descriptor-chain.js';
import { QUEUE_FEATURES } from '../../queue/features.js';
import { QueueDevice, type DeviceOptions } from '../queue-device.js';
import { HOST_BUF_ALLOC, HOST_PENDING_LIMIT, VsockConnection } from './connection.js';
import { PacketHeader, SHUTDOWN_RCV, SHUTDOWN_SEND, VSOCK_HEADER_SIZE, VSOCK_HOST_CID, VSOCK_TYPE_STREAM, VsockOp } from './packet.js';

export const VIRTIO_ID_VSOCK = 19;
const RX_QUEUE = 0;
const TX_QUEUE = 1;
const EVENT_QUEUE = 2;
/** struct virtio_vsock_event { le32 id; }, id 0 = VIRTIO_VSOCK_EVENT_TRANSPORT_RESET (5.10.6.7). */
const EVENT_TRANSPORT_RESET = 0;
const EVENT_SIZE = 4;
const QUEUE_SIZE = 256;
/** Largest payload novm accepts or sends in one packet (Linux uses at most 64 KiB). */
export const MAX_PACKET_PAYLOAD = 64 * 1024;
const FIRST_EPHEMERAL_PORT = 1 << 30;

/** How long a host-initiated connection waits for the guest's RESPONSE, and a closing one for its RST. */
export const CONNECT_TIMEOUT_MS = 2000;
export const CLOSE_TIMEOUT_MS = 2000;
/** How long a socket the guest closed may take to hand the host what the guest sent before. */
export const FLUSH_TIMEOUT_MS = 30_000;

/** Injected timers (DESIGN rule 8): set() returns a cancel function. */
export interface VsockTimers {
  set(ms: number, callback: () => void): () => void;
}

const realTimers: VsockTimers = {
  set: (ms, callback) => {
    const handle = setTimeout(callback, ms);
    handle.unref();
    return () => clearTimeout(handle);
  },
};

/** Where guest-initiated connections go. */
export interface VsockHostSide {
  /** A socket connecting to whatever serves host port `port`; it emits 'connect' or 'error'. */
  connect(port: number): Socket;
}

export interface VsockDeviceOptions extends DeviceOptions {
  /** The guest's context ID (>= 3; 0-2 are reserved, 5.10.4). */
  readonly guestCid: number;
  readonly host: VsockHostSide;
  readonly maxConnections?: number;
  readonly timers?: VsockTimers;
}

interface ControlPacket {
  readonly op: VsockOp;
  readonly hostPort: number;
  readonly guestPort: number;
  readonly flags: number;
}

export interface VsockMetrics {
  packetsFromGuest: number;
  packetsToGuest: number;
  droppedFromGuest: number;
  resets: number;
}

export class VsockDevice extends QueueDevice {
  readonly deviceType = VIRTIO_ID_VSOCK;
  readonly queueMaxSizes = [QUEUE_SIZE, QUEUE_SIZE, QUEUE_SIZE];
  readonly deviceFeatures = QUEUE_FEATURES;
  readonly configSize = 8;
  readonly guestCid: number;
  readonly metrics: VsockMetrics = { packetsFromGuest: 0, packetsToGuest: 0, droppedFromGuest: 0, resets: 0 };
  private readonly host: VsockHostSide;
  private readonly maxConnections: number;
  private readonly timers: VsockTimers;
  private readonly connections = new Map<number, Map<number, VsockConnection>>();
  private connectionCount = 0;
  private readonly control: ControlPacket[] = [];
  private readonly ready: VsockConnection[] = [];
  /** Config space (5.10.4): le64 guest_cid. */
  private readonly configBytes = new Uint8Array(8);
  private readonly txHeader = new PacketHeader();
  private readonly rxHeader = new PacketHeader();
  private nextHostPort = FIRST_EPHEMERAL_PORT;
  private readonly txHandler = (chain: DescriptorChain, memory: GuestMemory): number => this.fromGuest(chain, memory);

  constructor(options: VsockDeviceOptions) {
    super(options);
    if (!Number.isSafeInteger(options.guestCid) || options.guestCid < 3 || options.guestCid >= 0xffff_ffff) {
      throw new RangeError(`guest CID ${options.guestCid} is reserved or out of range (3 .. 2^32-2)`);
    }
    this.guestCid = options.guestCid;
    new DataView(this.configBytes.buffer).setBigUint64(0, BigInt(this.guestCid), true);
    this.host = options.host;
    this.maxConnections = options.maxConnections ?? 1024;
    this.timers = options.timers ?? realTimers;
  }

  protected get name(): string {
    return 'virtio-vsock';
  }

  get openConnections(): number {
    return this.connectionCount;
  }

  readConfig(offset: number, data: Uint8Array): void {
    const config = this.configBytes;
    data.fill(0);
    if (offset < 0 || offset >= 8) return;
    data.set(config.subarray(offset, Math.min(8, offset + data.length)));
  }

  writeConfig(): void {}

  protected processQueue(index: number): void {
    if (index === TX_QUEUE) {
      this.drain(TX_QUEUE, this.txHandler);
      this.toGuest();
    } else if (index === RX_QUEUE) {
      this.toGuest();
    }
    // The event queue only holds buffers for events novm never sends.
  }

  protected override onReset(): void {
    for (const byGuest of this.connections.values()) {
      for (const conn of byGuest.values()) conn.socket.destroy();
    }
    this.connections.clear();
    this.connectionCount = 0;
    this.control.length = 0;
    this.ready.length = 0;
  }

  /**
   * A host client asked (through the hybrid listener) to reach guest port `guestPort`.
   * `accepted(hostPort)` runs when the guest answers RESPONSE. Returns false if the device is
   * not running or has too many connections (the caller closes the socket).
   */
  connectFromHost(guestPort: number, socket: Socket, initialData: Buffer, accepted: (hostPort: number) => void): boolean {
    if (!this.isActive || this.connectionCount >= this.maxConnections) return false;
    const hostPort = this.allocateHostPort();
    if (hostPort === undefined) return false;
    const conn = new VsockConnection(hostPort, guestPort >>> 0, socket, 'connecting-guest');
    conn.onEstablished = accepted;
    this.add(conn);
    if (initialData.length > 0) this.queueHostData(conn, initialData);
    this.attachSocket(conn);
    this.queueControl(VsockOp.Request, conn.hostPort, conn.guestPort, 0);
    // A guest that never answers must not leave the host client hanging.
    this.startTimer(conn, CONNECT_TIMEOUT_MS);
    this.kick();
    return true;
  }

  /**
   * Tells the guest its connections are gone (after a snapshot restore, say): every open
   * connection is dropped and a TRANSPORT_RESET event goes on the event queue (5.10.6.7), after
   * which the guest re-reads guest_cid and resets its sockets. False if the guest posted no
   * event buffer (or the device is not running).
   */
  announceTransportReset(): boolean {
    const queue = this.queues[EVENT_QUEUE];
    const chain = this.chains[EVENT_QUEUE];
    const memory = this.memory;
    if (!this.isActive || queue === undefined || chain === undefined || memory === undefined) return false;
    for (const byGuest of [...this.connections.values()]) {
      for (const conn of [...byGuest.values()]) this.remove(conn);
    }
    this.control.length = 0;
    this.ready.length = 0;
    try {
      if (!queue.pop(chain)) return false;
      if (chain.writableBytes < EVENT_SIZE) {
        this.fail(`event buffer of ${chain.writableBytes} bytes`);
        return false;
      }
      const event = new Uint8Array(EVENT_SIZE);
      new DataView(event.buffer).setUint32(0, EVENT_TRANSPORT_RESET, true);
      chain.writeTo(memory, 0, event);
      queue.pushUsed(chain.head, EVENT_SIZE);
      this.signal(EVENT_QUEUE);
      return true;
    } catch (error: unknown) {
      this.handleError(error);
      return false;
    }
  }

  // ---- guest to host ----------------------------------------------------------------------

  private fromGuest(chain: DescriptorChain, memory: GuestMemory): number {
    this.metrics.packetsFromGuest++;
    const h = this.txHeader;
    if (chain.readableBytes < VSOCK_HEADER_SIZE) return this.drop('packet shorter than its header');
    chain.readFrom(memory, 0, h.bytes);
    const len = h.len;
    if (len > chain.readableBytes - VSOCK_HEADER_SIZE || len > MAX_PACKET_PAYLOAD) return this.drop(`payload length ${len} exceeds the chain or ${MAX_PACKET_PAYLOAD}`);
    // 5.10.6.1: the source is the guest's own CID; novm only routes to the host.
    if (h.srcCid !== this.guestCid || h.dstCid !== VSOCK_HOST_CID) return this.drop(`packet from CID ${h.srcCid} to CID ${h.dstCid}`);
    const hostPort = h.dstPort;
    const guestPort = h.srcPort;
    const conn = this.find(hostPort, guestPort);
    if (h.type !== VSOCK_TYPE_STREAM) {
      this.resetConnection(conn, hostPort, guestPort);
      return 0;
    }
    if (conn !== undefined) {
      conn.peerBufAlloc = h.bufAlloc;
      conn.peerFwdCnt = h.fwdCnt;
    }
    switch (h.op) {
      case VsockOp.Request:
        this.guestConnects(conn, hostPort, guestPort, h);
        break;
      case VsockOp.Response:
        if (conn?.state !== 'connecting-guest') {
          this.resetConnection(conn, hostPort, guestPort);
          break;
        }
        conn.state = 'established';
        conn.cancelTimer?.();
        conn.cancelTimer = undefined;
        conn.onEstablished?.(conn.hostPort);
        if (conn.pendingBytes > 0) this.markReady(conn);
        this.maybeFinish(conn);
        break;
      case VsockOp.Rst:
        if (conn !== undefined) this.remove(conn);
        break;
      case VsockOp.Shutdown:
        if (conn === undefined) {
          this.queueControl(VsockOp.Rst, hostPort, guestPort, 0);
          break;
        }
        if ((h.flags & (SHUTDOWN_RCV | SHUTDOWN_SEND)) === (SHUTDOWN_RCV | SHUTDOWN_SEND)) {
          // The guest closed its socket: finish with RST (5.10.6.6, as Linux does). What it sent
          // before may still sit in the host socket's write queue: that is delivered, then EOF.
          this.resetConnection(conn, hostPort, guestPort, true);
        } else if ((h.flags & SHUTDOWN_SEND) !== 0) {
          conn.socket.end();
        }
        break;
      case VsockOp.Rw:
        if (conn?.state !== 'established') {
          this.resetConnection(conn, hostPort, guestPort);
          break;
        }
        this.forwardToHost(conn, chain, memory, len);
        break;
      case VsockOp.CreditUpdate:
        if (conn === undefined) {
          this.queueControl(VsockOp.Rst, hostPort, guestPort, 0);
          break;
        }
        conn.creditRequested = false;
        if (conn.pendingBytes > 0) this.markReady(conn);
        break;
      case VsockOp.CreditRequest:
        if (conn === undefined) this.queueControl(VsockOp.Rst, hostPort, guestPort, 0);
        else this.queueControl(VsockOp.CreditUpdate, hostPort, guestPort, 0);
        break;
      default:
        this.resetConnection(conn, hostPort, guestPort);
    }
    return 0;
  }

  private drop(reason: string): number {
    this.metrics.droppedFromGuest++;
    this.log(`virtio-vsock: dropped a guest packet: ${reason}`);
    return 0;
  }

  private guestConnects(existing: VsockConnection | undefined, hostPort: number, guestPort: number, h: PacketHeader): void {
    if (existing !== undefined || this.connectionCount >= this.maxConnections) {
      this.resetConnection(existing, hostPort, guestPort);
      return;
    }
    let socket: Socket;
    try {
      socket = this.host.connect(hostPort);
    } catch (error: unknown) {
      this.log(`virtio-vsock: cannot reach host port ${hostPort}: ${error instanceof Error ? error.message : String(error)}`);
      this.queueControl(VsockOp.Rst, hostPort, guestPort, 0);
      return;
    }
    const conn = new VsockConnection(hostPort, guestPort, socket, 'connecting-host');
    conn.peerBufAlloc = h.bufAlloc;
    conn.peerFwdCnt = h.fwdCnt;
    this.add(conn);
    socket.once('connect', () => {
      if (!this.isLive(conn) || conn.state !== 'connecting-host') return;
      conn.state = 'established';
      this.queueControl(VsockOp.Response, hostPort, guestPort, 0);
      this.kick();
    });
    this.attachSocket(conn);
  }

  private forwardToHost(conn: VsockConnection, chain: DescriptorChain, memory: GuestMemory, len: number): void {
    if (len === 0) return;
    // 5.10.6.3.1: the guest may not exceed the buffer space we advertised.
    if (conn.unforwarded() + len > HOST_BUF_ALLOC) {
      this.log(`virtio-vsock: guest port ${conn.guestPort} overran its credit; connection reset`);
      this.resetConnection(conn, conn.hostPort, conn.guestPort);
      return;
    }
    const data = Buffer.allocUnsafe(len);
    chain.readFrom(memory, VSOCK_HEADER_SIZE, data);
    conn.recvCnt = (conn.recvCnt + len) >>> 0;
    conn.socket.write(data, (error) => {
      if (error !== null && error !== undefined) return;
      if (!this.isLive(conn)) return;
      conn.fwdCnt = (conn.fwdCnt + len) >>> 0;
      // Tell the guest about freed space once a quarter of the buffer is free again.
      if (((conn.fwdCnt - conn.reportedFwdCnt) >>> 0) >= HOST_BUF_ALLOC / 4) {
        this.queueControl(VsockOp.CreditUpdate, conn.hostPort, conn.guestPort, 0);
        this.kick();
      }
    });
  }

  // ---- host to guest ----------------------------------------------------------------------

  private attachSocket(conn: VsockConnection): void {
    const socket = conn.socket;
    socket.on('data', (chunk: Buffer) => {
      if (!this.isLive(conn)) return;
      this.queueHostData(conn, chunk);
      this.kick();
    });
    socket.on('error', () => {
      // 'close' follows; a connect failure is handled there too.
    });
    // Sockets are half-open capable: the host may stop sending and still read the answer.
    socket.on('end', () => {
      if (!this.isLive(conn)) return;
      conn.hostEof = true;
      this.maybeFinish(conn);
      this.kick();
    });
    socket.on('close', () => {
      if (!this.isLive(conn)) return;
      conn.hostEnded = true;
      if (conn.state === 'connecting-host' || conn.state === 'connecting-guest') {
        this.resetConnection(conn, conn.hostPort, conn.guestPort);
      } else {
        this.maybeFinish(conn);
      }
      this.kick();
    });
    socket.resume();
  }

  private queueHostData(conn: VsockConnection, chunk: Buffer): void {
    conn.pending.push(chunk);
    conn.pendingBytes += chunk.length;
    if (conn.pendingBytes > HOST_PENDING_LIMIT && !conn.paused) {
      conn.paused = true;
      conn.socket.pause();
    }
    if (conn.state === 'established') this.markReady(conn);
  }

  /**
   * Once the host's data is delivered: after a host EOF, SHUTDOWN(SEND) (the guest reads EOF and
   * may still write); after the host socket closed, SHUTDOWN(both) and wait for the guest's RST.
   */
  private maybeFinish(conn: VsockConnection): void {
    if (conn.pendingBytes > 0 || conn.shutdownQueued || conn.state !== 'established' && conn.state !== 'closing') return;
    if (!conn.hostEnded) {
      if (conn.hostEof && !conn.halfShutdownQueued) {
        conn.halfShutdownQueued = true;
        this.queueControl(VsockOp.Shutdown, conn.hostPort, conn.guestPort, SHUTDOWN_SEND);
      }
      return;
    }
    conn.shutdownQueued = true;
    conn.state = 'closing';
    this.queueControl(VsockOp.Shutdown, conn.hostPort, conn.guestPort, SHUTDOWN_RCV | SHUTDOWN_SEND);
    // 5.10.6.6: the guest should answer with RST; if it does not, end it ourselves.
    this.startTimer(conn, CLOSE_TIMEOUT_MS);
  }

  /** After `ms`, a connection still in the same state is reset (and the guest told). */
  private startTimer(conn: VsockConnection, ms: number): void {
    conn.cancelTimer?.();
    conn.cancelTimer = this.timers.set(ms, () => {
      conn.cancelTimer = undefined;
      if (!this.isLive(conn)) return;
      this.log(`virtio-vsock: guest port ${conn.guestPort} did not answer in ${ms} ms; connection reset`);
      this.resetConnection(conn, conn.hostPort, conn.guestPort);
      this.kick();
    });
  }

  private markReady(conn: VsockConnection): void {
    if (conn.queued) return;
    conn.queued = true;
    this.ready.push(conn);
  }

  private queueControl(op: VsockOp, hostPort: number, guestPort: number, flags: number): void {
    this.control.push({ op, hostPort, guestPort, flags });
  }

  /** Work for the rx queue arrived from a socket event: run it, never throw into the loop. */
  private kick(): void {
    if (!this.isActive) return;
    try {
      this.toGuest();
    } catch (error: unknown) {
      this.handleError(error);
    }
  }

  /** The next connection with data the guest has credit for, or undefined. */
  private readyConnection(): VsockConnection | undefined {
    while (this.ready.length > 0) {
      const conn = this.ready[0]!;
      if (!this.isLive(conn) || conn.state !== 'established' || conn.pendingBytes === 0) {
        conn.queued = false;
        this.ready.shift();
        continue;
      }
      if (conn.peerCredit() === 0) {
        // 5.10.6.3: out of credit: ask once, resume on CREDIT_UPDATE.
        if (!conn.creditRequested) {
          conn.creditRequested = true;
          this.queueControl(VsockOp.CreditRequest, conn.hostPort, conn.guestPort, 0);
        }
        conn.queued = false;
        this.ready.shift();
        continue;
      }
      return conn;
    }
    return undefined;
  }

  private toGuest(): void {
    const queue = this.queues[RX_QUEUE];
    const chain = this.chains[RX_QUEUE];
    const memory = this.memory;
    if (queue === undefined || chain === undefined || memory === undefined) return;
    let used = false;
    try {
      for (;;) {
        const conn = this.control.length > 0 ? undefined : this.readyConnection();
        if (this.control.length === 0 && conn === undefined) break;
        if (!queue.pop(chain)) {
          const had = queue.pending();
          queue.enableNotifications();
          if (queue.pending() > had) continue;
          break;
        }
        if (chain.writableBytes < VSOCK_HEADER_SIZE) {
          this.fail(`rx buffer of ${chain.writableBytes} bytes cannot hold a packet header`);
          return;
        }
        const written = conn === undefined ? this.writeControl(chain, memory) : this.writeData(conn, chain, memory);
        queue.pushUsed(chain.head, written);
        this.metrics.packetsToGuest++;
        used = true;
      }
    } finally {
      if (used && this.isActive) this.signal(RX_QUEUE);
    }
  }

  private fillHeader(op: VsockOp, hostPort: number, guestPort: number, flags: number, len: number): PacketHeader {
    const h = this.rxHeader;
    h.clear();
    h.srcCid = VSOCK_HOST_CID;
    h.dstCid = this.guestCid;
    h.srcPort = hostPort;
    h.dstPort = guestPort;
    h.len = len;
    h.type = VSOCK_TYPE_STREAM;
    h.op = op;
    h.flags = flags;
    h.bufAlloc = HOST_BUF_ALLOC;
    const conn = this.find(hostPort, guestPort);
    if (conn !== undefined) {
      h.fwdCnt = conn.fwdCnt;
      conn.reportedFwdCnt = conn.fwdCnt;
    }
    return h;
  }

  private writeControl(chain: DescriptorChain, memory: GuestMemory): number {
    const c = this.control.shift()!;
    const h = this.fillHeader(c.op, c.hostPort, c.guestPort, c.flags, 0);
    chain.writeTo(memory, 0, h.bytes);
    return VSOCK_HEADER_SIZE;
  }

  private writeData(conn: VsockConnection, chain: DescriptorChain, memory: GuestMemory): number {
    const room = Math.min(chain.writableBytes - VSOCK_HEADER_SIZE, MAX_PACKET_PAYLOAD, conn.peerCredit(), conn.pendingBytes);
    let done = 0;
    while (done < room) {
      const piece = conn.peekPending(room - done);
      if (piece === undefined || piece.length === 0) break;
      chain.writeTo(memory, VSOCK_HEADER_SIZE + done, piece);
      conn.consumePending(piece.length);
      done += piece.length;
    }
    const h = this.fillHeader(VsockOp.Rw, conn.hostPort, conn.guestPort, 0, done);
    chain.writeTo(memory, 0, h.bytes);
    if (conn.paused && conn.pendingBytes <= HOST_PENDING_LIMIT / 2) {
      conn.paused = false;
      conn.socket.resume();
    }
    if (conn.pendingBytes === 0) this.maybeFinish(conn);
    return VSOCK_HEADER_SIZE + done;
  }

  // ---- connection table -------------------------------------------------------------------

  private find(hostPort: number, guestPort: number): VsockConnection | undefined {
    return this.connections.get(hostPort)?.get(guestPort);
  }

  private isLive(conn: VsockConnection): boolean {
    return this.find(conn.hostPort, conn.guestPort) === conn;
  }

  private add(conn: VsockConnection): void {
    let byGuest = this.connections.get(conn.hostPort);
    if (byGuest === undefined) {
      byGuest = new Map();
      this.connections.set(conn.hostPort, byGuest);
    }
    byGuest.set(conn.guestPort, conn);
    this.connectionCount++;
  }

  /** Forgets a connection and closes its host socket: at once, or (`flush`) after the data
   *  already written to it has gone out, bounded by FLUSH_TIMEOUT_MS for a host that never reads. */
  private remove(conn: VsockConnection, flush = false): void {
    const byGuest = this.connections.get(conn.hostPort);
    if (byGuest?.get(conn.guestPort) !== conn) return;
    byGuest.delete(conn.guestPort);
    if (byGuest.size === 0) this.connections.delete(conn.hostPort);
    this.connectionCount--;
    conn.cancelTimer?.();
    conn.cancelTimer = undefined;
    if (!flush || conn.socket.destroyed) {
      conn.socket.destroy();
      return;
    }
    const socket = conn.socket;
    const cancel = this.timers.set(FLUSH_TIMEOUT_MS, () => socket.destroy());
    socket.end(() => {
      cancel();
      socket.destroy();
    });
  }

  /** Drops the connection (if any; its host socket flushed first with `flush`) and tells the guest with RST. */
  private resetConnection(conn: VsockConnection | undefined, hostPort: number, guestPort: number, flush = false): void {
    this.metrics.resets++;
    if (conn !== undefined) this.remove(conn, flush);
    this.queueControl(VsockOp.Rst, hostPort, guestPort, 0);
  }

  private allocateHostPort(): number | undefined {
    for (let tries = 0; tries < 1 << 16; tries++) {
      const port = this.nextHostPort;
      this.nextHostPort = port >= 0xffff_fffe ? FIRST_EPHEMERAL_PORT : port + 1;
      if (!this.connections.has(port)) return port;
    }
    return undefined;
  }
}
