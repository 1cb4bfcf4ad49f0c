// The blocking half of CREATE and MKDIR (MetaIo): make the host entry, then give it to its owner.
import { AT_SYMLINK_NOFOLLOW, closeFd, fchownat, lastErrno, mkdirat, O_CLOEXEC, O_CREAT, O_EXCL, O_RDWR, openat } from '../native/fs-calls.js';
import type { NewOwner } from './meta-io.js';

/** openat(O_CREAT | O_EXCL | O_RDWR) for a file (returns its fd) or mkdirat (returns 0), then
 *  fchownat if owner.chown; -errno on failure. `name` is NUL-terminated. */
export function makeEntry(kind: 'file' | 'dir', dirFd: number, name: Uint8Array, mode: number, owner: NewOwner): number {
  const result = kind === 'file' ? openat(dirFd, name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, mode) : mkdirat(dirFd, name, mode);
  if (result < 0) return -lastErrno();
  if (owner.chown && fchownat(dirFd, name, owner.uid >>> 0, owner.gid >>> 0, AT_SYMLINK_NOFOLLOW) < 0) {
    const errno = lastErrno();
    if (kind === 'file') closeFd(result);
    return -errno;
  }
  return result;
}
