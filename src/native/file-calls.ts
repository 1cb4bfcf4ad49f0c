// File calls Node's fs module lacks: fallocate(2) for punching holes and zeroing ranges
// (virtio-blk DISCARD / WRITE_ZEROES). Fixed prototype, raw result; errno via libc.lastErrno().
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');

export const fallocate = libc.func('int fallocate(int fd, int mode, int64_t offset, int64_t len)') as (fd: number, mode: number, offset: number, length: number) => number;

export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const FALLOC_FL_ZERO_RANGE = 0x10;
export const EOPNOTSUPP = 95;
