// Guest RAM backed by one memfd per region, mapped MAP_SHARED so device backends in other
// threads or processes (vhost-user) can map the same pages. MAP_NORESERVE: untouched RAM costs
// no RSS.
import * as libc from '../native/libc.js';
import type { GuestAddress } from './address.js';
import { GuestMemory, MAX_VIEW_BYTES, type GuestRegion, type RegionBacking } from './guest-memory.js';

export interface MappedRegion extends GuestRegion {
  readonly mapping: libc.Mapping;
}

function viewsOf(mapping: libc.Mapping, size: number): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  for (let off = 0; off < size; off += MAX_VIEW_BYTES) {
    out.push(viewAt(mapping, off, Math.min(MAX_VIEW_BYTES, size - off)));
  }
  return out;
}

function viewAt(mapping: libc.Mapping, offset: number, length: number): ArrayBuffer {
  // koffi.view accepts a plain address, which is also how other threads view the same RAM.
  return libc.viewOf(mapping.address + BigInt(offset), length);
}

/** Creates memfd-backed RAM for the given ranges. */
export function createMemfdMemory(ranges: ReadonlyArray<{ start: GuestAddress; size: number }>): { memory: GuestMemory; regions: MappedRegion[] } {
  const regions: MappedRegion[] = [];
  try {
    for (const range of ranges) {
      const fd = libc.check('memfd_create', libc.memfdCreate('novm-ram', libc.MFD_ALLOW_SEALING));
      try {
        libc.check('ftruncate', libc.ftruncate(fd, range.size), `${range.size} bytes`);
        const mapping = libc.mmap(range.size, libc.PROT_READ | libc.PROT_WRITE, libc.MAP_SHARED | libc.MAP_NORESERVE, fd);
        regions.push({ start: range.start, size: range.size, fd, fdOffset: 0, hostAddress: mapping.address, mapping });
      } catch (error) {
        libc.close(fd);
        throw error;
      }
    }
  } catch (error) {
    releaseRegions(regions);
    throw error;
  }
  return { memory: memoryOver(regions), regions };
}

/** Maps regions described by (fd, offset) pairs from another process, e.g. vhost-user. */
export function mapSharedRegions(ranges: ReadonlyArray<{ start: GuestAddress; size: number; fd: number; fdOffset: number }>): { memory: GuestMemory; regions: MappedRegion[] } {
  const regions: MappedRegion[] = [];
  try {
    for (const r of ranges) {
      const mapping = libc.mmap(r.size, libc.PROT_READ | libc.PROT_WRITE, libc.MAP_SHARED | libc.MAP_NORESERVE, r.fd, r.fdOffset);
      regions.push({ start: r.start, size: r.size, fd: r.fd, fdOffset: r.fdOffset, hostAddress: mapping.address, mapping });
    }
  } catch (error) {
    for (const r of regions) libc.munmap(r.mapping);
    throw error;
  }
  return { memory: memoryOver(regions), regions };
}

export function memoryOver(regions: readonly MappedRegion[]): GuestMemory {
  const backings: RegionBacking[] = regions.map((region) => ({ region, buffers: viewsOf(region.mapping, region.size) }));
  return new GuestMemory(backings);
}

export function releaseRegions(regions: readonly MappedRegion[]): void {
  for (const r of regions) {
    libc.munmap(r.mapping);
    if (r.fd >= 0) libc.close(r.fd);
  }
}

/**
 * Views RAM already mapped in this process from its plain descriptors: how a vCPU worker
 * thread sees the RAM the main thread mapped (descriptors cross postMessage, pointers do not).
 */
export function memoryFromDescriptors(regions: readonly GuestRegion[]): GuestMemory {
  return new GuestMemory(regions.map((region) => {
    const buffers: ArrayBuffer[] = [];
    for (let off = 0; off < region.size; off += MAX_VIEW_BYTES) {
      buffers.push(libc.viewOf(region.hostAddress + BigInt(off), Math.min(MAX_VIEW_BYTES, region.size - off)));
    }
    return { region, buffers };
  }));
}
