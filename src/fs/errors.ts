// Typed errors of the file-system engine. An FsError carries the errno the client sees; nothing
// the client sends can produce anything else (the handler turns any other failure into EIO).
import { lastErrno } from '../native/fs-calls.js';

export const Errno = {
  EPERM: 1, ENOENT: 2, EIO: 5, ENXIO: 6, EBADF: 9, EAGAIN: 11, ENOMEM: 12, EACCES: 13, EFAULT: 14, EBUSY: 16,
  EEXIST: 17, EXDEV: 18, ENODEV: 19, ENOTDIR: 20, EISDIR: 21, EINVAL: 22, EMFILE: 24, ENOSPC: 28, EROFS: 30,
  EMLINK: 31, ERANGE: 34, ENAMETOOLONG: 36, ENOSYS: 38, ENOTEMPTY: 39, ELOOP: 40, ENODATA: 61, EPROTO: 71,
  EOVERFLOW: 75, EOPNOTSUPP: 95, ESTALE: 116,
} as const;

export class FsError extends Error {
  readonly kind = 'fs' as const;
  constructor(readonly errno: number, message?: string) {
    super(message ?? `errno ${errno}`);
    this.name = 'FsError';
  }
}

const cached: FsError[] = [];

/** A shared FsError per errno: errors are the common case on some paths (ENOENT lookups, ENODATA
 *  xattrs) and capturing a stack trace per request would cost more than the request itself. */
export function fsError(errno: number): FsError {
  if (errno <= 0 || errno >= 4096) errno = Errno.EIO;
  return (cached[errno] ??= new FsError(errno));
}

/** Throws an FsError with the current errno if `result` is negative. */
export function sys(result: number, _what?: string): number {
  if (result < 0) throw fsError(lastErrno());
  return result;
}

/** The errno to reply with for any thrown value (node:fs errors carry a negative errno). */
export function errnoOf(error: unknown): number {
  if (error instanceof FsError) return error.errno;
  if (error !== null && typeof error === 'object' && 'errno' in error && typeof error.errno === 'number') {
    const n = Math.abs(error.errno);
    if (n > 0 && n < 4096) return n;
  }
  return Errno.EIO;
}
