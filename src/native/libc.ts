// Thin koffi bindings to the libc calls novm needs. Fixed (non-variadic) prototypes only:
// HOST-NOTES measured a variadic ioctl prototype at ~90 ns more per call, and KVM_RUN is hot.
// Every wrapper returns the raw result; callers turn -1 into a typed error with `lastErrno()`.
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');

export type Pointer = unknown;

export const open = libc.func('int open(const char *path, int flags, int mode)') as (path: string, flags: number, mode: number) => number;
export const close = libc.func('int close(int fd)') as (fd: number) => number;
/** ioctl with an integer argument (or none): KVM_RUN, KVM_CREATE_VCPU, KVM_CHECK_EXTENSION... */
export const ioctlInt = libc.func('int ioctl(int fd, unsigned long request, unsigned long arg)') as (fd: number, request: number, arg: number) => number;
/** ioctl with a pointer to a struct held in a Buffer or typed array. */
export const ioctlPtr = libc.func('int ioctl(int fd, unsigned long request, void *arg)') as (fd: number, request: number, arg: Uint8Array | ArrayBufferView | null) => number;
export const mmapRaw = libc.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)') as (addr: null, length: number, prot: number, flags: number, fd: number, offset: number) => Pointer;
export const munmapRaw = libc.func('int munmap(void *addr, size_t length)') as (addr: Pointer, length: number) => number;
export const memfdCreate = libc.func('int memfd_create(const char *name, unsigned int flags)') as (name: string, flags: number) => number;
export const ftruncate = libc.func('int ftruncate(int fd, int64_t length)') as (fd: number, length: number) => number;
export const eventfd = libc.func('int eventfd(unsigned int initval, int flags)') as (initval: number, flags: number) => number;
export const read = libc.func('intptr_t read(int fd, void *buf, size_t count)') as (fd: number, buf: Uint8Array, count: number) => number;
export const write = libc.func('intptr_t write(int fd, const void *buf, size_t count)') as (fd: number, buf: Uint8Array, count: number) => number;
export const pthreadSelf = libc.func('unsigned long pthread_self()') as () => number | bigint;
export const pthreadKill = libc.func('int pthread_kill(unsigned long thread, int sig)') as (thread: number | bigint, sig: number) => number;
export const madvise = libc.func('int madvise(void *addr, size_t length, int advice)') as (addr: Pointer, length: number, advice: number) => number;
export const getpid = libc.func('int getpid()') as () => number;
export const gettid = libc.func('int gettid()') as () => number;

export function lastErrno(): number {
  return koffi.errno();
}

/** An ArrayBuffer over `length` bytes of native memory at `ptr` (no copy). */
export function viewOf(ptr: Pointer | bigint, length: number): ArrayBuffer {
  return koffi.view(ptr, length);
}

export function addressOf(ptr: Pointer): bigint {
  return koffi.address(ptr);
}

// Constants from <fcntl.h>, <sys/mman.h>, <sys/eventfd.h>, <signal.h> on x86-64 Linux.
export const O_RDONLY = 0;
export const O_RDWR = 2;
export const O_CLOEXEC = 0o2000000;
export const O_NONBLOCK = 0o4000;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_ANONYMOUS = 0x20;
export const MAP_NORESERVE = 0x4000;
export const MFD_CLOEXEC = 1;
export const MFD_ALLOW_SEALING = 2;
export const EFD_CLOEXEC = 0o2000000;
export const EFD_NONBLOCK = 0o4000;
export const MADV_DONTFORK = 10;
export const SIGUSR2 = 12;
export const EINTR = 4;
export const EAGAIN = 11;
export const ENOENT = 2;
export const EACCES = 13;

const MAP_FAILED = 0xffffffffffffffffn;

export class SystemCallError extends Error {
  readonly kind = 'syscall' as const;
  constructor(readonly call: string, readonly errno: number, detail?: string) {
    super(`${call} failed: ${errnoName(errno)}${detail ? ` (${detail})` : ''}`);
    this.name = 'SystemCallError';
  }
}

export function errnoName(errno: number): string {
  const names: Record<number, string> = {
    1: 'EPERM', 2: 'ENOENT', 4: 'EINTR', 5: 'EIO', 9: 'EBADF', 11: 'EAGAIN', 12: 'ENOMEM', 13: 'EACCES',
    14: 'EFAULT', 16: 'EBUSY', 17: 'EEXIST', 19: 'ENODEV', 22: 'EINVAL', 24: 'EMFILE', 25: 'ENOTTY', 28: 'ENOSPC',
    38: 'ENOSYS', 95: 'EOPNOTSUPP',
  };
  return `${names[errno] ?? 'errno'} (${errno})`;
}

/** Throws SystemCallError if `result` is negative; returns it otherwise. */
export function check(call: string, result: number, detail?: string): number {
  if (result < 0) throw new SystemCallError(call, lastErrno(), detail);
  return result;
}

export interface Mapping {
  readonly pointer: Pointer;
  readonly address: bigint;
  readonly length: number;
}

export function mmap(length: number, prot: number, flags: number, fd: number, offset = 0): Mapping {
  const pointer = mmapRaw(null, length, prot, flags, fd, offset);
  const address = addressOf(pointer);
  if (address === MAP_FAILED || address === 0n) throw new SystemCallError('mmap', lastErrno(), `${length} bytes`);
  return { pointer, address, length };
}

export function munmap(mapping: Mapping): void {
  check('munmap', munmapRaw(mapping.pointer, mapping.length));
}
