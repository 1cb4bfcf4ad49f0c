// The host side of virtio-net: a Linux tap opened through /dev/net/tun (Documentation/
// networking/tuntap.rst) with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR and a 12-byte vnet header.
// Readiness: one poll() at a time on [tap, wake eventfd] runs on libuv's thread pool (koffi
// async), so the JS thread never blocks; close() writes the eventfd to end a pending poll.
import koffi from 'koffi';
import { InputError } from '../../../common/errors.js';
import {
  EAGAIN, EFD_CLOEXEC, EFD_NONBLOCK, O_CLOEXEC, O_NONBLOCK, O_RDWR, SystemCallError,
  check, close, eventfd, ioctlInt, ioctlPtr, lastErrno, open, read, write,
} from '../../../native/libc.js';
import { NET_HEADER_SIZE } from './net-device.js';
import { TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN, type TapPort } from './tap-port.js';

// <linux/if_tun.h>: _IOW('T', n, int/unsigned int).
const TUNSETIFF = 0x400454ca;
const TUNSETOFFLOAD = 0x400454d0;
const TUNSETVNETHDRSZ = 0x400454d8;
const IFF_TAP = 0x0002;
const IFF_MULTI_QUEUE = 0x0100;
const IFF_NO_PI = 0x1000;
const IFF_VNET_HDR = 0x4000;
const IFNAMSIZ = 16;
const IFREQ_SIZE = 40;
const POLLIN = 0x0001;

const libc = koffi.load('libc.so.6');
const pollFn = libc.func('int poll(void *fds, unsigned long nfds, int timeout)');
type PollCallback = (error: unknown, result: number) => void;
const pollAsync = pollFn.async as (fds: Uint8Array, nfds: number, timeout: number, callback: PollCallback) => void;

/**
 * A shared readiness watcher (e.g. vhost-user's FdPoller: one thread polling many fds). Without
 * one, each tap keeps one poll() on libuv's thread pool (4 threads by default) while armed.
 */
export interface FdReadiness {
  /** Calls `callback` once when `fd` is readable; armed on watch. */
  watch(fd: number, kind: 'once', callback: () => void): void;
  rearm(fd: number): void;
  unwatch(fd: number): void;
}

export interface TapOpenOptions {
  /** Interface name: an existing tap to attach to, or the name of a new one ("" lets the kernel pick tapN). */
  readonly name?: string;
  readonly multiQueue?: boolean;
  readonly readiness?: FdReadiness;
}

export class TapDevice implements TapPort {
  readonly supportedOffloads: number;
  private readonly pollFds = new Uint8Array(16);
  private readonly wakeValue = new Uint8Array(8);
  private readonly drainBuffer = new Uint8Array(8);
  private handler: (() => void) | undefined;
  private polling = false;
  private closed = false;
  private watching = false;

  private constructor(readonly fd: number, readonly name: string, private readonly wakeFd: number, private readonly readiness: FdReadiness | undefined) {
    this.supportedOffloads = probeOffloads(fd);
    this.setOffloads(0);
    const view = new DataView(this.pollFds.buffer);
    view.setInt32(0, fd, true);
    view.setInt16(4, POLLIN, true);
    view.setInt32(8, wakeFd, true);
    view.setInt16(12, POLLIN, true);
    new DataView(this.wakeValue.buffer).setBigUint64(0, 1n, true);
  }

  /** Creates a tap (or attaches to an existing one). Needs CAP_NET_ADMIN. */
  static open(options: TapOpenOptions = {}): TapDevice {
    const name = options.name ?? '';
    if (Buffer.byteLength(name) >= IFNAMSIZ || /[/\s]/.test(name)) throw new InputError(`bad tap interface name "${name}" (at most ${IFNAMSIZ - 1} bytes, no spaces or slashes)`);
    const fd = open('/dev/net/tun', O_RDWR | O_NONBLOCK | O_CLOEXEC, 0);
    if (fd < 0) throw new SystemCallError('open', lastErrno(), '/dev/net/tun');
    try {
      const ifreq = new Uint8Array(IFREQ_SIZE);
      ifreq.set(Buffer.from(name), 0);
      const flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (options.multiQueue === true ? IFF_MULTI_QUEUE : 0);
      new DataView(ifreq.buffer).setUint16(IFNAMSIZ, flags, true);
      check('ioctl(TUNSETIFF)', ioctlPtr(fd, TUNSETIFF, ifreq), name || 'new tap');
      const end = ifreq.indexOf(0);
      const actualName = Buffer.from(ifreq.subarray(0, end < 0 || end > IFNAMSIZ ? IFNAMSIZ : end)).toString();
      const headerSize = new Int32Array([NET_HEADER_SIZE]);
      check('ioctl(TUNSETVNETHDRSZ)', ioctlPtr(fd, TUNSETVNETHDRSZ, headerSize));
      const wakeFd = check('eventfd', eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
      return new TapDevice(fd, actualName, wakeFd, options.readiness);
    } catch (error: unknown) {
      close(fd);
      throw error;
    }
  }

  read(buffer: Uint8Array): number {
    if (this.closed) return 0;
    const n = read(this.fd, buffer, buffer.length);
    if (n >= 0) return n;
    const errno = lastErrno();
    if (errno === EAGAIN) return 0;
    throw new SystemCallError('read(tap)', errno, this.name);
  }

  write(frame: Uint8Array): boolean {
    if (this.closed) return false;
    return write(this.fd, frame, frame.length) === frame.length;
  }

  setOffloads(flags: number): void {
    if (this.closed) return;
    check('ioctl(TUNSETOFFLOAD)', ioctlInt(this.fd, TUNSETOFFLOAD, flags), `0x${flags.toString(16)}`);
  }

  armReadable(handler: () => void): void {
    if (this.closed) return;
    this.handler = handler;
    if (this.readiness !== undefined) {
      if (this.watching) {
        this.readiness.rearm(this.fd);
      } else {
        this.watching = true;
        this.readiness.watch(this.fd, 'once', () => this.fire());
      }
      return;
    }
    if (this.polling) return;
    this.polling = true;
    pollAsync(this.pollFds, 2, -1, (error) => {
      this.polling = false;
      read(this.wakeFd, this.drainBuffer, 8);
      if (this.closed) {
        this.release();
        return;
      }
      if (error !== null && error !== undefined) {
        process.stderr.write(`virtio-net: poll on ${this.name} failed: ${String(error)}\n`);
        return;
      }
      this.fire();
    });
  }

  private fire(): void {
    if (this.closed) return;
    const h = this.handler;
    this.handler = undefined;
    h?.();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.handler = undefined;
    if (this.watching) this.readiness?.unwatch(this.fd);
    if (this.polling) write(this.wakeFd, this.wakeValue, 8); // the poll callback releases the fds
    else this.release();
  }

  private release(): void {
    close(this.fd);
    close(this.wakeFd);
  }
}

/** The richest offload set this tap accepts: with and then without segmentation. */
function probeOffloads(fd: number): number {
  const candidates = [TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, TUN_F_CSUM, 0];
  for (const flags of candidates) {
    if (ioctlInt(fd, TUNSETOFFLOAD, flags) === 0) return flags;
  }
  return 0;
}
