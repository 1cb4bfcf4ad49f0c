// The back-end (device) side of one vhost-user connection: the protocol state machine that
// turns front-end messages into a VirtioDeviceModel's activation, kicks and calls. The same
// device class runs behind novm's own transports; nothing device-specific lives here.
//
// Vring life cycle (vhost-user.rst "Ring states"): a ring is started by SET_VRING_KICK and
// stopped by GET_VRING_BASE; when VHOST_USER_F_PROTOCOL_FEATURES was negotiated it also needs
// SET_VRING_ENABLE 1. Whenever the set of running rings or the memory table changes, the device
// is re-activated with every running ring's current indices, so no request is lost or repeated.
import { readlinkSync } from 'node:fs';
import * as libc from '../native/libc.js';
import type { ActivationContext, VirtioDeviceModel } from '../virtio/device.js';
import { VIRTIO_F_RING_PACKED } from '../virtio/queue/features.js';
import type { QueueStart } from '../virtio/queue/split-queue.js';
import { CLOSED_BY_PEER, CLOSED_BY_SERVER, ProtocolError, type Message, type VhostUserConnection } from './connection.js';
import type { FdPoller } from './fd-poller.js';
import { MemoryTable, MemoryTableError, type MemoryRegionDescription } from './memory-table.js';
import {
  FLAG_NEED_REPLY, MAX_CONFIG_SIZE, MAX_MEM_REGIONS, PROTOCOL_F_CONFIG, PROTOCOL_F_CONFIGURE_MEM_SLOTS, PROTOCOL_F_MQ, PROTOCOL_F_REPLY_ACK,
  REQUESTS_WITH_REPLY, Request, VHOST_USER_F_PROTOCOL_FEATURES, VRING_FILE_INDEX_MASK, VRING_FILE_NOFD, requestName,
} from './protocol.js';

/** A device model that can also report its rings' positions (every novm QueueDevice can). */
export interface BackendDevice extends VirtioDeviceModel {
  queuePosition?(index: number): { nextAvail: number; nextUsed: number } | undefined;
  /** Stop taking requests from a queue; resolves when those in flight are done (GET_VRING_BASE). */
  quiesce?(index: number): Promise<void> | undefined;
  /**
   * Present on a device that waits for kicks and signals calls itself (a QueueThreadDevice,
   * from its own thread): the backend then hands it each ring's descriptors whenever one of
   * them changes (-1: none), instead of watching kicks with its FdPoller and writing calls. The
   * descriptors stay the backend's and are closed after the next call for that ring returns:
   * a device that keeps one duplicates it.
   */
  setVringFiles?(index: number, files: VringFiles): void;
}

export interface VringFiles {
  readonly kick: number;
  readonly call: number;
}

/** NOVM_VHOST_TRACE=1 logs every request (protocol debugging). */
const TRACE = process.env['NOVM_VHOST_TRACE'] === '1';

export const BACKEND_PROTOCOL_FEATURES = PROTOCOL_F_MQ | PROTOCOL_F_REPLY_ACK | PROTOCOL_F_CONFIG | PROTOCOL_F_CONFIGURE_MEM_SLOTS;
/** Memory slots offered with CONFIGURE_MEM_SLOTS (ADD_MEM_REG / REM_MEM_REG). */
export const MAX_MEM_SLOTS = 32;

interface Vring {
  readonly index: number;
  size: number;
  descUser: bigint | undefined;
  availUser: bigint | undefined;
  usedUser: bigint | undefined;
  base: number;
  kickFd: number;
  callFd: number;
  errFd: number;
  enabled: boolean;
  started: boolean;
  running: boolean;
}

/** Thrown by a handler for a well-formed request that cannot be honoured: a NACK, not a close. */
class RequestFailed extends Error {}

export class VhostUserBackend {
  private readonly vrings: Vring[];
  private memoryTable = MemoryTable.empty;
  private ackedFeatures = 0n;
  private protocolFeatures = 0n;
  private readonly warned = new Set<string>();
  private readonly signal = new Uint8Array(8);
  private activeKey = '';

  constructor(
    private readonly device: BackendDevice,
    private readonly connection: VhostUserConnection,
    private readonly poller: FdPoller,
    private readonly log: (line: string) => void,
  ) {
    new DataView(this.signal.buffer).setBigUint64(0, 1n, true);
    this.vrings = device.queueMaxSizes.map((_, index) => ({
      index, size: 0, descUser: undefined, availUser: undefined, usedUser: undefined, base: 0,
      kickFd: -1, callFd: -1, errFd: -1, enabled: false, started: false, running: false,
    }));
    void connection.closedReason.then((reason) => {
      // One line per broken connection; an orderly disconnect is not news.
      if (reason !== CLOSED_BY_PEER && reason !== CLOSED_BY_SERVER) this.log(`vhost-user: closing connection: ${reason}`);
      this.teardown();
    });
  }

  /** Handles one message; a malformed one closes the connection with one logged line. */
  handle(message: Message): void | Promise<void> {
    const { request, flags } = message;
    if (TRACE) this.log(`vhost-user: <- ${requestName(request)} flags=0x${flags.toString(16)} size=${message.payload.byteLength} fds=${message.fds.length}`);
    let ok = true;
    try {
      const pending = this.dispatch(message);
      if (pending !== undefined) return pending;
    } catch (error) {
      if (error instanceof RequestFailed || error instanceof MemoryTableError) {
        this.log(`vhost-user: ${requestName(request)} refused: ${error.message}`);
        ok = false;
      } else {
        const reason = error instanceof Error ? error.message : String(error);
        this.connection.close(`${requestName(request)}: ${reason}`);
        return;
      }
    }
    // REPLY_ACK (vhost-user.rst): requests without a reply of their own get a u64 status.
    if ((flags & FLAG_NEED_REPLY) !== 0 && (this.protocolFeatures & PROTOCOL_F_REPLY_ACK) !== 0n && !REQUESTS_WITH_REPLY.has(request)) {
      this.connection.replyU64(request, ok ? 0n : 1n);
    }
  }

  private dispatch(message: Message): Promise<void> | undefined {
    const { request, payload, fds } = message;
    const c = this.connection;
    switch (request) {
      case Request.GetFeatures:
        c.replyU64(request, this.device.deviceFeatures | VHOST_USER_F_PROTOCOL_FEATURES);
        return;
      case Request.SetFeatures: {
        const features = u64(payload, 0);
        const offered = this.device.deviceFeatures | VHOST_USER_F_PROTOCOL_FEATURES;
        if ((features & ~offered) !== 0n) throw new RequestFailed(`features 0x${features.toString(16)} were not offered`);
        this.ackedFeatures = features;
        this.refresh();
        return;
      }
      case Request.GetProtocolFeatures:
        c.replyU64(request, BACKEND_PROTOCOL_FEATURES);
        return;
      case Request.SetProtocolFeatures:
        this.protocolFeatures = u64(payload, 0) & BACKEND_PROTOCOL_FEATURES;
        return;
      case Request.SetOwner:
        return;
      case Request.ResetOwner:
      case Request.ResetDevice:
        this.resetRings();
        return;
      case Request.GetQueueNum:
        c.replyU64(request, BigInt(this.vrings.length));
        return;
      case Request.SetMemTable:
        this.setMemTable(payload, fds);
        return;
      case Request.GetMaxMemSlots:
        c.replyU64(request, BigInt(MAX_MEM_SLOTS));
        return;
      case Request.AddMemReg: {
        if (fds.length !== 1) throw new ProtocolError('ADD_MEM_REG without exactly one descriptor');
        if (this.memoryTable.regionCount >= MAX_MEM_SLOTS) throw new RequestFailed(`all ${MAX_MEM_SLOTS} memory slots are in use`);
        const table = this.memoryTable.withRegion(singleRegion(payload), fds[0]!);
        if (!MemoryTable.sealed(fds)) this.warnOnce('unsealed', UNSEALED_WARNING);
        this.memoryTable = table;
        this.refresh(true);
        return;
      }
      case Request.RemMemReg: {
        const region = singleRegion(payload);
        const { table, releaseRemoved } = this.memoryTable.withoutRegion(region.guestAddress, region.size);
        this.memoryTable = table;
        // The device moves to the smaller table before the region is unmapped.
        this.refresh(true);
        releaseRemoved();
        return;
      }
      case Request.SetVringNum: {
        const vring = this.vring(u32(payload, 0));
        const num = u32(payload, 4);
        const max = this.device.queueMaxSizes[u32(payload, 0)]!;
        if (num < 1 || num > max) throw new RequestFailed(`ring size ${num} (maximum ${max})`);
        vring.size = num;
        return;
      }
      case Request.SetVringAddr: {
        const vring = this.vring(u32(payload, 0));
        need(payload, 40);
        vring.descUser = payload.getBigUint64(8, true);
        vring.usedUser = payload.getBigUint64(16, true);
        vring.availUser = payload.getBigUint64(24, true);
        this.refresh(true);
        return;
      }
      case Request.SetVringBase: {
        const vring = this.vring(u32(payload, 0));
        // Split: the next avail index. Packed: avail index | wrap << 15 | (used index | wrap << 15) << 16.
        vring.base = u32(payload, 4);
        return;
      }
      case Request.GetVringBase: {
        const index = u32(payload, 0);
        const vring = this.vring(index);
        // Requests still in flight must land in the used ring before its position is reported.
        const idle = vring.running ? this.device.quiesce?.(index) : undefined;
        if (idle !== undefined) {
          this.dropKick(vring);
          return idle.then(() => this.stopRing(index));
        }
        this.stopRing(index);
        return undefined;
      }
      case Request.SetVringKick:
      case Request.SetVringCall:
      case Request.SetVringErr:
        this.setVringFile(request, u64(payload, 0), fds);
        return;
      case Request.SetVringEnable: {
        const vring = this.vring(u32(payload, 0));
        vring.enabled = u32(payload, 4) !== 0;
        this.refresh();
        return;
      }
      case Request.GetConfig: {
        const offset = u32(payload, 0);
        const size = u32(payload, 4);
        if (size > MAX_CONFIG_SIZE || offset > MAX_CONFIG_SIZE - size) throw new ProtocolError(`config range ${offset} + ${size}`);
        need(payload, 12 + size);
        const data = new Uint8Array(size);
        const inDevice = Math.max(0, Math.min(size, this.device.configSize - offset));
        if (inDevice > 0) this.device.readConfig(offset, data.subarray(0, inDevice));
        c.reply(request, (view) => {
          view.setUint32(0, offset, true);
          view.setUint32(4, size, true);
          view.setUint32(8, u32(payload, 8), true);
          new Uint8Array(view.buffer, view.byteOffset + 12, size).set(data);
          return 12 + size;
        });
        return;
      }
      case Request.SetConfig: {
        const offset = u32(payload, 0);
        const size = u32(payload, 4);
        if (size > MAX_CONFIG_SIZE || offset > MAX_CONFIG_SIZE - size) throw new ProtocolError(`config range ${offset} + ${size}`);
        need(payload, 12 + size);
        if (offset + size > this.device.configSize) throw new RequestFailed(`config write ${offset} + ${size} beyond ${this.device.configSize} bytes`);
        this.device.writeConfig(offset, new Uint8Array(payload.buffer, payload.byteOffset + 12, size).slice());
        return;
      }
      default:
        if (!this.warned.has(`request-${request}`)) {
          this.warned.add(`request-${request}`);
          this.log(`vhost-user: ignoring unsupported ${requestName(request)}`);
        }
        throw new RequestFailed('not supported');
    }
  }

  /** GET_VRING_BASE: stop the ring and report where it stands. */
  private stopRing(index: number): void {
    const vring = this.vring(index);
    const position = vring.running ? this.device.queuePosition?.(index) : undefined;
    let base = vring.base;
    if (position !== undefined) base = this.packed() ? (position.nextAvail | (position.nextUsed << 16)) >>> 0 : position.nextAvail;
    vring.base = base;
    vring.started = false;
    this.dropKick(vring);
    this.refresh();
    this.connection.reply(Request.GetVringBase, (view) => {
      view.setUint32(0, index, true);
      view.setUint32(4, base, true);
      return 8;
    });
  }

  private vring(index: number): Vring {
    const vring = this.vrings[index];
    if (vring === undefined) throw new ProtocolError(`queue index ${index} >= ${this.vrings.length}`);
    return vring;
  }

  private setMemTable(payload: DataView, fds: number[]): void {
    const count = u32(payload, 0);
    if (count > MAX_MEM_REGIONS) throw new ProtocolError(`${count} memory regions (at most ${MAX_MEM_REGIONS})`);
    need(payload, 8 + 32 * count);
    const descriptions: MemoryRegionDescription[] = [];
    for (let i = 0; i < count; i++) {
      const at = 8 + 32 * i;
      descriptions.push({
        guestAddress: safe(payload.getBigUint64(at, true)),
        size: safe(payload.getBigUint64(at + 8, true)),
        userAddress: payload.getBigUint64(at + 16, true),
        mmapOffset: safe(payload.getBigUint64(at + 24, true)),
      });
    }
    const table = MemoryTable.map(descriptions, fds);
    if (!MemoryTable.sealed(fds)) this.warnOnce('unsealed', UNSEALED_WARNING);
    const old = this.memoryTable;
    this.memoryTable = table;
    // The device must stop using the old mapping before it goes away.
    this.refresh(true);
    old.release();
  }

  private setVringFile(request: number, value: bigint, fds: number[]): void {
    const index = Number(value & VRING_FILE_INDEX_MASK);
    const vring = this.vring(index);
    const noFd = (value & VRING_FILE_NOFD) !== 0n;
    let fd = -1;
    if (!noFd) {
      if (fds.length !== 1) throw new ProtocolError(`${requestName(request)} without exactly one descriptor`);
      fd = fds[0]!;
      // Anything but an eventfd (a memfd, a socket...) could be readable forever and spin the
      // poller: refuse it.
      if (!isEventFd(fd)) throw new RequestFailed(`${requestName(request)}: descriptor is not an eventfd`);
      fds[0] = -1; // kept: the connection must not close it
    }
    if (request === Request.SetVringKick) {
      this.dropKick(vring);
      if (fd < 0) throw new RequestFailed('polling mode (no kick descriptor) is not supported');
      vring.kickFd = fd;
      vring.started = true;
      if (this.device.setVringFiles !== undefined) {
        this.handOver(vring);
      } else {
        this.poller.watch(fd, 'eventfd', () => {
          if (vring.running) this.device.notify(index);
        });
      }
      this.refresh();
    } else if (request === Request.SetVringCall) {
      const old = vring.callFd;
      vring.callFd = fd;
      this.handOver(vring);
      if (old >= 0) libc.close(old);
    } else {
      if (vring.errFd >= 0) libc.close(vring.errFd);
      vring.errFd = fd;
    }
  }

  private dropKick(vring: Vring): void {
    const fd = vring.kickFd;
    if (fd < 0) return;
    vring.kickFd = -1;
    if (this.device.setVringFiles !== undefined) this.handOver(vring);
    else this.poller.unwatch(fd);
    libc.close(fd);
  }

  /** A device that owns its notifications learns the ring's current descriptors. */
  private handOver(vring: Vring): void {
    this.device.setVringFiles?.(vring.index, { kick: vring.kickFd, call: vring.callFd });
  }

  private packed(): boolean {
    return (this.ackedFeatures & VIRTIO_F_RING_PACKED) !== 0n;
  }

  /** Ready to run: everything the ring needs is known and the front end started it. */
  private isReady(vring: Vring): boolean {
    const enabled = (this.ackedFeatures & VHOST_USER_F_PROTOCOL_FEATURES) === 0n || vring.enabled;
    return vring.started && enabled && vring.size > 0 && vring.descUser !== undefined;
  }

  /** Re-activates the device if the set of running rings (or, if `force`, memory) changed. */
  private refresh(force = false): void {
    const ready = this.vrings.map((v) => this.isReady(v));
    const key = ready.map((r) => (r ? '1' : '0')).join('') + `/${this.ackedFeatures}`;
    if (!force && key === this.activeKey) return;
    const anyRunning = this.vrings.some((v) => v.running);
    if (!force && !ready.some((r) => r) && !anyRunning) {
      this.activeKey = key;
      return;
    }
    this.activeKey = key;
    // Carry the indices of rings that were running into the new activation.
    const positions = this.vrings.map((v, i) => (v.running ? this.device.queuePosition?.(i) : undefined));
    this.device.reset();
    this.vrings.forEach((v) => (v.running = false));
    if (!ready.some((r) => r)) return;
    const memory = this.memoryTable.memory;
    const queues: Array<QueueStart | undefined> = this.vrings.map((v, i) => {
      if (!ready[i]) return undefined;
      const descAddr = this.memoryTable.translate(v.descUser!);
      const driverAddr = this.memoryTable.translate(v.availUser!);
      const deviceAddr = this.memoryTable.translate(v.usedUser!);
      if (descAddr === undefined || driverAddr === undefined || deviceAddr === undefined) {
        this.warnOnce(`addr-${i}`, `vhost-user: queue ${i}: ring addresses are outside the memory table; queue left stopped`);
        return undefined;
      }
      const position = positions[i];
      if (this.packed()) {
        return { size: v.size, descAddr, driverAddr, deviceAddr, nextAvail: position?.nextAvail ?? v.base & 0xffff, nextUsed: position?.nextUsed ?? v.base >>> 16 };
      }
      let nextUsed = position?.nextUsed;
      // Split: where the used ring stands is in guest memory (vhost-user.rst, SET_VRING_BASE).
      if (nextUsed === undefined && memory.isValidRange(deviceAddr + 2, 2)) nextUsed = memory.readU16LE(deviceAddr + 2);
      return { size: v.size, descAddr, driverAddr, deviceAddr, nextAvail: position?.nextAvail ?? v.base & 0xffff, nextUsed: nextUsed ?? 0 };
    });
    if (!queues.some((q) => q !== undefined)) return;
    const context: ActivationContext = {
      memory,
      features: this.ackedFeatures & ~VHOST_USER_F_PROTOCOL_FEATURES,
      queues,
      notifyQueue: (index) => this.call(index),
      notifyConfig: () => this.warnOnce('config', 'vhost-user: configuration change not delivered (no back-end request channel)'),
      needsReset: (reason) => this.raiseError(reason),
    };
    queues.forEach((q, i) => (this.vrings[i]!.running = q !== undefined));
    this.device.activate(context);
    // Buffers may have been posted before the ring started: look once.
    queues.forEach((q, i) => {
      if (q !== undefined) this.device.notify(i);
    });
  }

  private call(index: number): void {
    const fd = this.vrings[index]?.callFd ?? -1;
    if (fd >= 0) libc.write(fd, this.signal, 8);
  }

  private raiseError(reason: string): void {
    this.warnOnce('needs-reset', `vhost-user: device needs reset: ${reason}`);
    for (const v of this.vrings) if (v.errFd >= 0) libc.write(v.errFd, this.signal, 8);
  }

  private warnOnce(key: string, line: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.log(line);
  }

  private resetRings(): void {
    this.device.reset();
    for (const v of this.vrings) {
      this.dropKick(v);
      const call = v.callFd;
      v.callFd = -1;
      if (call >= 0) {
        this.handOver(v);
        libc.close(call);
      }
      if (v.errFd >= 0) libc.close(v.errFd);
      Object.assign(v, { size: 0, descUser: undefined, availUser: undefined, usedUser: undefined, base: 0, callFd: -1, errFd: -1, enabled: false, started: false, running: false });
    }
    this.activeKey = '';
  }

  private teardown(): void {
    this.resetRings();
    this.memoryTable.release();
    this.memoryTable = MemoryTable.empty;
  }
}

const UNSEALED_WARNING = 'vhost-user: guest memory is not sealed against shrinking (F_SEAL_SHRINK); a front end that truncates it would crash this back end';

/** ADD_MEM_REG / REM_MEM_REG payload: u64 padding, then one region. */
function singleRegion(payload: DataView): MemoryRegionDescription {
  need(payload, 40);
  return {
    guestAddress: safe(payload.getBigUint64(8, true)),
    size: safe(payload.getBigUint64(16, true)),
    userAddress: payload.getBigUint64(24, true),
    mmapOffset: safe(payload.getBigUint64(32, true)),
  };
}

function isEventFd(fd: number): boolean {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`) === 'anon_inode:[eventfd]';
  } catch {
    return false;
  }
}

function need(payload: DataView, bytes: number): void {
  if (payload.byteLength < bytes) throw new ProtocolError(`payload of ${payload.byteLength} bytes, expected ${bytes}`);
}

function u32(payload: DataView, offset: number): number {
  need(payload, offset + 4);
  return payload.getUint32(offset, true);
}

function u64(payload: DataView, offset: number): bigint {
  need(payload, offset + 8);
  return payload.getBigUint64(offset, true);
}

function safe(value: bigint): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProtocolError(`value 0x${value.toString(16)} too large`);
  return Number(value);
}
