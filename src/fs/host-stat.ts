// Decoding of struct stat filled by fstatat(). One scratch buffer per engine: the engine runs on one
// thread and copies what it needs out of the buffer before the next call.
import { AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW, fstatat, S_IFCHR, S_IFDIR, S_IFMT, STAT_SIZE, StatOffset, type CName } from '../native/fs-calls.js';
import { sys } from './errors.js';

export class HostStat {
  readonly buffer = new Uint8Array(STAT_SIZE);
  readonly view = new DataView(this.buffer.buffer);

  /** Copies another stat's bytes (to keep a result across later calls). */
  copyFrom(other: HostStat): this {
    this.buffer.set(other.buffer);
    return this;
  }

  /** fstat of an fd (O_PATH fds included). */
  ofFd(fd: number): this {
    sys(fstatat(fd, '', this.buffer, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW));
    return this;
  }

  /** lstat of `name` in directory `dirFd`; returns false if it does not exist. */
  ofName(dirFd: number, name: CName): boolean {
    return fstatat(dirFd, name, this.buffer, AT_SYMLINK_NOFOLLOW) === 0;
  }

  u64(offset: number): number {
    return this.view.getUint32(offset, true) + this.view.getUint32(offset + 4, true) * 0x1_0000_0000;
  }
  get dev(): number { return this.u64(StatOffset.dev); }
  get ino(): number { return this.u64(StatOffset.ino); }
  get mode(): number { return this.view.getUint32(StatOffset.mode, true); }
  get uid(): number { return this.view.getUint32(StatOffset.uid, true); }
  get gid(): number { return this.view.getUint32(StatOffset.gid, true); }
  get rdev(): number { return this.u64(StatOffset.rdev); }
  get size(): number { return this.u64(StatOffset.size); }
  get isDir(): boolean { return (this.mode & S_IFMT) === S_IFDIR; }
  /** An overlayfs whiteout: a character device 0/0. */
  get isWhiteout(): boolean { return (this.mode & S_IFMT) === S_IFCHR && this.rdev === 0; }
  get type(): number { return this.mode & S_IFMT; }
}
