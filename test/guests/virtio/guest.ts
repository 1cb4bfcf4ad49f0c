// The virtio test guest (multiboot v1, 32-bit): see virtio.c for its command line.
import type { GuestSpec } from '../build.js';

export const VIRTIO_GUEST = {
  name: 'virtio',
  dir: 'test/guests/virtio',
  sources: ['entry.S', 'virtio.c', 'common.c'],
  linkerScript: '../boot/guest32.ld',
  arch: 'i386',
} as const satisfies GuestSpec;

/** The byte the guest writes at offset `i` of the sector it writes (pattern_byte in virtio.c). */
export function patternByte(seed: number, i: number): number {
  return (seed + i * 7 + (i >> 8)) & 0xff;
}
