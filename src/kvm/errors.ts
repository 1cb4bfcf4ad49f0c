import { errnoName } from '../native/libc.js';

export type KvmErrorKind = 'unavailable' | 'api-version' | 'capability-missing' | 'ioctl';

/** A failure of the host's KVM, typed by what went wrong. */
export class KvmError extends Error {
  constructor(readonly kind: KvmErrorKind, message: string, readonly errno = 0) {
    super(message);
    this.name = 'KvmError';
  }
}

export function ioctlError(what: string, errno: number): KvmError {
  return new KvmError('ioctl', `${what} failed: ${errnoName(errno)}`, errno);
}
