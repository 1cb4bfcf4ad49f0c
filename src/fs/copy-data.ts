// The data half of a copy-up: the bytes of one host file into another, sparse-aware (only the
// data extents, found with SEEK_DATA/SEEK_HOLE, are copied; holes stay holes), in chunks, never the
// whole file in memory: copy_file_range in the kernel, or pread/pwrite through a 1 MiB buffer
// where the two files do not allow it (another file system, an old kernel). Runs on the /dev/fuse
// loop for small files and on an I/O worker for large ones.
import { copyFileRange, ftruncate, lastErrno, lseek, pread, pwrite, SEEK_DATA, SEEK_HOLE } from '../native/fs-calls.js';
import { Errno, sys } from './errors.js';

export class DataCopier {
  private readonly offIn = new BigInt64Array(1);
  private readonly offOut = new BigInt64Array(1);
  private buffer: Buffer | null = null;

  /** Copies `size` bytes of `src` to `dst` (both open fds) and sets dst's size; throws FsError. */
  copy(src: number, dst: number, size: number): void {
    let pos = 0;
    while (pos < size) {
      const data = lseek(src, pos, SEEK_DATA);
      if (data < 0) {
        if (lastErrno() === Errno.ENXIO) break;
        sys(-1, 'SEEK_DATA');
      }
      let hole = lseek(src, data, SEEK_HOLE);
      if (hole < 0) hole = size;
      this.copyRange(src, dst, data, Math.min(hole, size) - data);
      pos = hole;
    }
    sys(ftruncate(dst, size));
  }

  private copyRange(src: number, dst: number, offset: number, length: number): void {
    let done = 0;
    while (done < length) {
      this.offIn[0] = BigInt(offset + done);
      this.offOut[0] = BigInt(offset + done);
      const n = copyFileRange(src, this.offIn, dst, this.offOut, Math.min(length - done, 1 << 30), 0);
      if (n < 0) {
        const errno = lastErrno();
        if (errno === Errno.EXDEV || errno === Errno.ENOSYS || errno === Errno.EINVAL || errno === Errno.EOPNOTSUPP) {
          this.copyByBuffer(src, dst, offset + done, length - done);
          return;
        }
        sys(-1, 'copy_file_range');
      }
      if (n === 0) break;
      done += n;
    }
  }

  private copyByBuffer(src: number, dst: number, offset: number, length: number): void {
    const buf = (this.buffer ??= Buffer.allocUnsafe(1 << 20));
    let done = 0;
    while (done < length) {
      const n = sys(pread(src, buf, Math.min(buf.length, length - done), offset + done));
      if (n === 0) break;
      let w = 0;
      while (w < n) w += sys(pwrite(dst, buf.subarray(w, n), n - w, offset + done + w));
      done += n;
    }
  }
}
