// koffi bindings for the file-system calls node:fs lacks: *at() resolution relative to a directory
// fd with O_NOFOLLOW / O_PATH, renameat2 flags, fallocate, SEEK_DATA/SEEK_HOLE, mknod, xattrs,
// statfs, copy_file_range, O_TMPFILE. Fixed prototypes only (see libc.ts). Every wrapper returns
// the raw result; a negative result means "look at lastErrno()". Names are passed as NUL-terminated
// byte buffers (`CName`) so that non-UTF-8 file names survive unchanged.
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');

/** A NUL-terminated byte string (a Buffer whose last byte is 0) or a JS string (UTF-8 encoded by koffi). */
export type CName = Uint8Array | string;

export const openat = libc.func('int openat(int dirfd, const char *path, int flags, uint32_t mode)') as (dirfd: number, path: CName, flags: number, mode: number) => number;
export const closeFd = libc.func('int close(int fd)') as (fd: number) => number;
export const fstatat = libc.func('int fstatat(int dirfd, const char *path, void *buf, int flags)') as (dirfd: number, path: CName, buf: Uint8Array, flags: number) => number;
export const mkdirat = libc.func('int mkdirat(int dirfd, const char *path, uint32_t mode)') as (dirfd: number, path: CName, mode: number) => number;
export const mknodat = libc.func('int mknodat(int dirfd, const char *path, uint32_t mode, uint64_t dev)') as (dirfd: number, path: CName, mode: number, dev: number) => number;
export const symlinkat = libc.func('int symlinkat(const char *target, int dirfd, const char *path)') as (target: CName, dirfd: number, path: CName) => number;
export const readlinkat = libc.func('intptr_t readlinkat(int dirfd, const char *path, void *buf, size_t size)') as (dirfd: number, path: CName, buf: Uint8Array, size: number) => number;
export const unlinkat = libc.func('int unlinkat(int dirfd, const char *path, int flags)') as (dirfd: number, path: CName, flags: number) => number;
export const renameat2 = libc.func('int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, uint32_t flags)') as (olddirfd: number, oldpath: CName, newdirfd: number, newpath: CName, flags: number) => number;
export const linkat = libc.func('int linkat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, int flags)') as (olddirfd: number, oldpath: CName, newdirfd: number, newpath: CName, flags: number) => number;
export const fchownat = libc.func('int fchownat(int dirfd, const char *path, uint32_t uid, uint32_t gid, int flags)') as (dirfd: number, path: CName, uid: number, gid: number, flags: number) => number;
export const chmod = libc.func('int chmod(const char *path, uint32_t mode)') as (path: CName, mode: number) => number;
export const utimensat = libc.func('int utimensat(int dirfd, const char *path, const void *times, int flags)') as (dirfd: number, path: CName, times: Uint8Array, flags: number) => number;
export const ftruncate = libc.func('int ftruncate(int fd, int64_t length)') as (fd: number, length: number) => number;
export const truncate = libc.func('int truncate(const char *path, int64_t length)') as (path: CName, length: number) => number;
export const fallocate = libc.func('int fallocate(int fd, int mode, int64_t offset, int64_t len)') as (fd: number, mode: number, offset: number | bigint, len: number | bigint) => number;
export const lseek = libc.func('int64_t lseek(int fd, int64_t offset, int whence)') as (fd: number, offset: number, whence: number) => number;
export const fsync = libc.func('int fsync(int fd)') as (fd: number) => number;
export const fdatasync = libc.func('int fdatasync(int fd)') as (fd: number) => number;
export const syncfs = libc.func('int syncfs(int fd)') as (fd: number) => number;
export const fstatfs = libc.func('int fstatfs(int fd, void *buf)') as (fd: number, buf: Uint8Array) => number;
export const copyFileRange = libc.func('intptr_t copy_file_range(int fdIn, int64_t *offIn, int fdOut, int64_t *offOut, size_t len, uint32_t flags)') as (fdIn: number, offIn: BigInt64Array, fdOut: number, offOut: BigInt64Array, len: number, flags: number) => number;
export const pread = libc.func('intptr_t pread(int fd, void *buf, size_t count, int64_t offset)') as (fd: number, buf: Uint8Array, count: number, offset: number) => number;
export const pwrite = libc.func('intptr_t pwrite(int fd, const void *buf, size_t count, int64_t offset)') as (fd: number, buf: Uint8Array, count: number, offset: number) => number;
export const getxattr = libc.func('intptr_t getxattr(const char *path, const char *name, void *value, size_t size)') as (path: CName, name: CName, value: Uint8Array | null, size: number) => number;
export const lgetxattr = libc.func('intptr_t lgetxattr(const char *path, const char *name, void *value, size_t size)') as (path: CName, name: CName, value: Uint8Array | null, size: number) => number;
export const setxattr = libc.func('int setxattr(const char *path, const char *name, const void *value, size_t size, int flags)') as (path: CName, name: CName, value: Uint8Array, size: number, flags: number) => number;
export const listxattr = libc.func('intptr_t listxattr(const char *path, void *list, size_t size)') as (path: CName, list: Uint8Array | null, size: number) => number;
export const fgetxattr = libc.func('intptr_t fgetxattr(int fd, const char *name, void *value, size_t size)') as (fd: number, name: CName, value: Uint8Array | null, size: number) => number;
export const flistxattr = libc.func('intptr_t flistxattr(int fd, void *list, size_t size)') as (fd: number, list: Uint8Array | null, size: number) => number;
export const removexattr = libc.func('int removexattr(const char *path, const char *name)') as (path: CName, name: CName) => number;
export const setrlimit = libc.func('int setrlimit(int resource, const void *rlim)') as (resource: number, rlim: BigUint64Array) => number;
export const getrlimit = libc.func('int getrlimit(int resource, void *rlim)') as (resource: number, rlim: BigUint64Array) => number;
/** capget/capset on the calling thread (header: version, pid 0; data: 2 x effective, permitted, inheritable). */
export const capget = libc.func('int capget(void *header, void *data)') as (header: Uint32Array, data: Uint32Array) => number;
export const capset = libc.func('int capset(void *header, const void *data)') as (header: Uint32Array, data: Uint32Array) => number;
export const LINUX_CAPABILITY_VERSION_3 = 0x20080522;
export const CAP_FSETID = 4;
export const ioctlUint32Out = libc.func('int ioctl(int fd, unsigned long request, void *arg)') as (fd: number, request: number, arg: Uint32Array) => number;

export function lastErrno(): number {
  return koffi.errno();
}

// <fcntl.h>, <linux/fs.h>, <sys/stat.h> on x86-64 Linux.
export const AT_FDCWD = -100;
export const AT_SYMLINK_NOFOLLOW = 0x100;
export const AT_REMOVEDIR = 0x200;
export const AT_SYMLINK_FOLLOW = 0x400;
export const AT_EMPTY_PATH = 0x1000;
export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_ACCMODE = 3;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_NOCTTY = 0o400;
export const O_TRUNC = 0o1000;
export const O_APPEND = 0o2000;
export const O_NONBLOCK = 0o4000;
export const O_DSYNC = 0o10000;
export const O_DIRECT = 0o40000;
export const O_LARGEFILE = 0o100000;
export const O_DIRECTORY = 0o200000;
export const O_NOFOLLOW = 0o400000;
export const O_NOATIME = 0o1000000;
export const O_CLOEXEC = 0o2000000;
export const O_SYNC = 0o4010000;
export const O_PATH = 0o10000000;
export const O_TMPFILE = 0o20200000;
export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;
export const RENAME_WHITEOUT = 4;
export const SEEK_SET = 0;
export const SEEK_CUR = 1;
export const SEEK_END = 2;
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;
export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;
export const UTIME_NOW = 0x3fffffff;
export const UTIME_OMIT = 0x3ffffffe;
export const RLIMIT_NOFILE = 7;
export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;
export const S_ISGID = 0o2000;
export const S_ISUID = 0o4000;

/** struct stat on x86-64 (144 bytes); offsets from <asm/stat.h>. */
export const STAT_SIZE = 144;
export const StatOffset = {
  dev: 0, ino: 8, nlink: 16, mode: 24, uid: 28, gid: 32, rdev: 40, size: 48, blksize: 56, blocks: 64,
  atime: 72, atimeNsec: 80, mtime: 88, mtimeNsec: 96, ctime: 104, ctimeNsec: 112,
} as const;

/** struct statfs on x86-64 (120 bytes). */
export const STATFS_SIZE = 120;
export const StatfsOffset = {
  type: 0, bsize: 8, blocks: 16, bfree: 24, bavail: 32, files: 40, ffree: 48, fsid: 56, namelen: 64, frsize: 72,
} as const;

/** FUSE_DEV_IOC_CLONE = _IOR(229, 0, uint32_t). */
export const FUSE_DEV_IOC_CLONE = 0x8004e500;

/** preadv2 (RWF_NOWAIT reads that never block on a cache miss). The iovec array is raw memory
 *  (base address, length pairs) so that koffi passes it as is; buffers come from nativeBuffer(). */
export const preadv2 = libc.func('intptr_t preadv2(int fd, const void *iov, int iovcnt, int64_t offset, int flags)') as (fd: number, iov: BigUint64Array, iovcnt: number, offset: number, flags: number) => number;

/** preadv/pwritev with iovecs that point straight into guest memory (virtio-fs READ and WRITE
 *  without a copy); the iovec array is raw (base, length) u64 pairs, like preadv2's. */
export const preadv = libc.func('intptr_t preadv(int fd, const void *iov, int iovcnt, int64_t offset)') as (fd: number, iov: BigUint64Array, iovcnt: number, offset: number) => number;
export const pwritev = libc.func('intptr_t pwritev(int fd, const void *iov, int iovcnt, int64_t offset)') as (fd: number, iov: BigUint64Array, iovcnt: number, offset: number) => number;

/** A buffer in native memory whose address is known (for iovecs). Lives as long as the process. */
export function nativeBuffer(size: number): { buffer: Buffer; address: bigint } {
  const pointer = koffi.alloc('uint8_t', size);
  keepAlive.push(pointer);
  return { buffer: Buffer.from(koffi.view(pointer, size)), address: koffi.address(pointer) };
}
const keepAlive: unknown[] = [];
export const RWF_NOWAIT = 8;
export const writeFd = libc.func('intptr_t write(int fd, const void *buf, size_t count)') as (fd: number, buf: Uint8Array, count: number) => number;
export const readFd = libc.func('intptr_t read(int fd, void *buf, size_t count)') as (fd: number, buf: Uint8Array, count: number) => number;
