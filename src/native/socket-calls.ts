// Unix-domain socket calls Node's net module does not offer: file descriptors passed with
// SCM_RIGHTS (vhost-user sends guest RAM memfds and eventfds that way), plus poll(2).
// Fixed prototypes only; struct msghdr / cmsghdr / iovec are laid out by hand in native
// memory allocated once per channel (x86-64 layouts from <sys/socket.h>, <bits/uio.h>).
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');

export const socket = libc.func('int socket(int domain, int type, int protocol)') as (domain: number, type: number, protocol: number) => number;
export const bind = libc.func('int bind(int fd, const void *addr, uint32_t len)') as (fd: number, addr: Uint8Array, len: number) => number;
export const connect = libc.func('int connect(int fd, const void *addr, uint32_t len)') as (fd: number, addr: Uint8Array, len: number) => number;
export const listen = libc.func('int listen(int fd, int backlog)') as (fd: number, backlog: number) => number;
export const accept4 = libc.func('int accept4(int fd, void *addr, void *addrlen, int flags)') as (fd: number, addr: null, addrlen: null, flags: number) => number;
const recvmsgRaw = libc.func('int64_t recvmsg(int fd, void *msg, int flags)') as (fd: number, msg: unknown, flags: number) => number;
const sendmsgRaw = libc.func('int64_t sendmsg(int fd, const void *msg, int flags)') as (fd: number, msg: unknown, flags: number) => number;
export const poll = libc.func('int poll(void *fds, uint64_t nfds, int timeout)') as (fds: Uint8Array, nfds: number, timeout: number) => number;
export const shutdown = libc.func('int shutdown(int fd, int how)') as (fd: number, how: number) => number;
export const fcntl = libc.func('int fcntl(int fd, int cmd, int arg)') as (fd: number, cmd: number, arg: number) => number;

export const AF_UNIX = 1;
export const SOCK_STREAM = 1;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SCM_RIGHTS = 1;
export const MSG_DONTWAIT = 0x40;
export const MSG_CMSG_CLOEXEC = 0x40000000;
export const MSG_NOSIGNAL = 0x4000;
export const MSG_CTRUNC = 0x8;
export const POLLIN = 0x1;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const POLLNVAL = 0x20;
export const F_GETFL = 3;
export const F_SETFL = 4;
export const SHUT_RDWR = 2;

/** struct sockaddr_un for `path` (at most 107 bytes); throws RangeError if too long. */
export function unixAddress(path: string): Uint8Array {
  const encoded = Buffer.from(path, 'utf8');
  if (encoded.length > 107) throw new RangeError(`socket path is longer than 107 bytes: ${path}`);
  const addr = new Uint8Array(110);
  new DataView(addr.buffer).setUint16(0, AF_UNIX, true);
  addr.set(encoded, 2);
  return addr;
}

const MSGHDR_SIZE = 56;
const IOVEC_SIZE = 16;
const CMSG_HEADER = 16; // cmsg_len u64, cmsg_level i32, cmsg_type i32

/**
 * Native buffers for one recvmsg/sendmsg at a time with up to `maxFds` descriptors.
 * Data is staged through `data` (capacity bytes); nothing is allocated per call.
 */
export class MessageBuffers {
  private readonly header: unknown;
  private readonly headerView: DataView;
  private readonly iov: unknown;
  private readonly iovView: DataView;
  private readonly dataPtr: unknown;
  private readonly controlPtr: unknown;
  private readonly controlView: DataView;
  private readonly controlCapacity: number;
  /** Bytes exchanged with the kernel: fill before send, read after receive. */
  readonly data: Uint8Array;
  /** Descriptors received by the last receive() (valid until the next call). */
  readonly fds: number[] = [];
  /** True if the last receive() lost descriptors because maxFds was too small. */
  truncated = false;

  constructor(readonly capacity: number, readonly maxFds: number) {
    this.controlCapacity = CMSG_HEADER + align8(4 * maxFds);
    this.header = koffi.alloc('uint8_t', MSGHDR_SIZE);
    this.iov = koffi.alloc('uint8_t', IOVEC_SIZE);
    this.dataPtr = koffi.alloc('uint8_t', capacity);
    this.controlPtr = koffi.alloc('uint8_t', this.controlCapacity);
    this.headerView = new DataView(koffi.view(this.header, MSGHDR_SIZE));
    this.iovView = new DataView(koffi.view(this.iov, IOVEC_SIZE));
    this.data = new Uint8Array(koffi.view(this.dataPtr, capacity));
    this.controlView = new DataView(koffi.view(this.controlPtr, this.controlCapacity));
  }

  private prepare(offset: number, length: number, control: number): void {
    this.iovView.setBigUint64(0, koffi.address(this.dataPtr) + BigInt(offset), true);
    this.iovView.setBigUint64(8, BigInt(length), true);
    const h = this.headerView;
    h.setBigUint64(0, 0n, true); // msg_name
    h.setUint32(8, 0, true); // msg_namelen
    h.setBigUint64(16, koffi.address(this.iov), true);
    h.setBigUint64(24, 1n, true); // msg_iovlen
    h.setBigUint64(32, control === 0 ? 0n : koffi.address(this.controlPtr), true);
    h.setBigUint64(40, BigInt(control), true);
    h.setInt32(48, 0, true); // msg_flags
  }

  /**
   * recvmsg into data[offset, offset + length). Returns the raw result (-1 with errno set);
   * received descriptors are appended to `fds` (the caller owns and must close them).
   */
  receive(fd: number, offset: number, length: number, flags: number): number {
    if (offset < 0 || length < 0 || offset + length > this.capacity) throw new RangeError('receive range outside the buffer');
    this.prepare(offset, length, this.controlCapacity);
    const n = recvmsgRaw(fd, this.header, flags | MSG_CMSG_CLOEXEC);
    if (n < 0) return n;
    const controlLength = Number(this.headerView.getBigUint64(40, true));
    this.truncated = (this.headerView.getInt32(48, true) & MSG_CTRUNC) !== 0;
    let at = 0;
    while (at + CMSG_HEADER <= controlLength) {
      const cmsgLength = Number(this.controlView.getBigUint64(at, true));
      if (cmsgLength < CMSG_HEADER || at + cmsgLength > controlLength) break;
      const level = this.controlView.getInt32(at + 8, true);
      const type = this.controlView.getInt32(at + 12, true);
      if (level === SOL_SOCKET && type === SCM_RIGHTS) {
        for (let p = at + CMSG_HEADER; p + 4 <= at + cmsgLength; p += 4) this.fds.push(this.controlView.getInt32(p, true));
      }
      at += align8(cmsgLength);
    }
    return n;
  }

  /** sendmsg of data[0, length) with `fds` attached (SCM_RIGHTS). */
  send(fd: number, length: number, fds: readonly number[], flags: number): number {
    if (fds.length > this.maxFds) throw new RangeError(`at most ${this.maxFds} descriptors per message`);
    if (fds.length === 0) {
      this.prepare(0, length, 0);
    } else {
      const cmsgLength = CMSG_HEADER + 4 * fds.length;
      this.controlView.setBigUint64(0, BigInt(cmsgLength), true);
      this.controlView.setInt32(8, SOL_SOCKET, true);
      this.controlView.setInt32(12, SCM_RIGHTS, true);
      fds.forEach((f, i) => this.controlView.setInt32(CMSG_HEADER + 4 * i, f, true));
      this.prepare(0, length, align8(cmsgLength));
    }
    return sendmsgRaw(fd, this.header, flags | MSG_NOSIGNAL);
  }
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

const socketpairRaw = libc.func('int socketpair(int domain, int type, int protocol, void *sv)') as (domain: number, type: number, protocol: number, sv: Int32Array) => number;

/** A connected pair of Unix stream sockets (tests, in-process front ends); throws on failure. */
export function socketPair(flags = SOCK_CLOEXEC): [number, number] {
  const sv = new Int32Array([-1, -1]);
  const r = socketpairRaw(AF_UNIX, SOCK_STREAM | flags, 0, sv);
  if (r < 0) throw new Error(`socketpair failed: errno ${koffi.errno()}`);
  return [sv[0]!, sv[1]!];
}
