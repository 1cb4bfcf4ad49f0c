// The front end's guest RAM as the back end sees it: regions received with SET_MEM_TABLE /
// ADD_MEM_REG, each {guest physical address, size, front-end virtual address, offset in the
// fd}, mapped MAP_SHARED here. Vring addresses arrive as front-end virtual addresses and are
// translated to guest physical ones through this table.
import type { GuestAddress } from '../memory/address.js';
import { GuestMemory, MAX_VIEW_BYTES, type RegionBacking } from '../memory/guest-memory.js';
import { fstatSync } from 'node:fs';
import * as libc from '../native/libc.js';
import { fcntl } from '../native/socket-calls.js';

const F_GET_SEALS = 1034;
const F_SEAL_SHRINK = 0x2;

export interface MemoryRegionDescription {
  readonly guestAddress: number;
  readonly size: number;
  readonly userAddress: bigint;
  readonly mmapOffset: number;
}

interface MappedRegion extends MemoryRegionDescription {
  readonly mapping: libc.Mapping;
  /** Offset of the region inside the mapping (mmap offsets must be page aligned). */
  readonly delta: number;
}

const PAGE_SIZE = 4096;
/** Guest addresses stay below 2^52 so every sum here is an exact double. */
const MAX_GUEST_ADDRESS = 2 ** 52;

export class MemoryTableError extends Error {
  readonly kind = 'vhost-user-memory' as const;
  constructor(message: string) {
    super(message);
    this.name = 'MemoryTableError';
  }
}

export class MemoryTable {
  private constructor(private readonly regions: readonly MappedRegion[], readonly memory: GuestMemory) {}

  static readonly empty = new MemoryTable([], new GuestMemory([]));

  /** Validates and maps the regions; `fds` are only borrowed (the caller closes them). */
  static map(descriptions: readonly MemoryRegionDescription[], fds: readonly number[]): MemoryTable {
    if (descriptions.length !== fds.length) throw new MemoryTableError(`${descriptions.length} regions but ${fds.length} descriptors`);
    const sorted = descriptions.map((d, i) => ({ d, fd: fds[i]! })).sort((a, b) => a.d.guestAddress - b.d.guestAddress);
    for (let i = 0; i < sorted.length; i++) {
      validate(sorted[i]!.d, sorted[i]!.fd);
      const previous = sorted[i - 1];
      if (previous !== undefined && previous.d.guestAddress + previous.d.size > sorted[i]!.d.guestAddress) throw new MemoryTableError('memory regions overlap');
    }
    const mapped: MappedRegion[] = [];
    try {
      for (const { d, fd } of sorted) mapped.push(mapRegion(d, fd));
      return new MemoryTable(mapped, memoryOf(mapped));
    } catch (error) {
      for (const r of mapped) libc.munmap(r.mapping);
      throw error;
    }
  }

  /**
   * ADD_MEM_REG: a table with one more region (mapped now); existing mappings are shared with
   * this table, so release only the table that is dropped last.
   */
  withRegion(description: MemoryRegionDescription, fd: number): MemoryTable {
    validate(description, fd);
    for (const r of this.regions) {
      if (r.guestAddress < description.guestAddress + description.size && description.guestAddress < r.guestAddress + r.size) {
        throw new MemoryTableError(`region at 0x${description.guestAddress.toString(16)} overlaps one already mapped`);
      }
    }
    const added = mapRegion(description, fd);
    const regions = [...this.regions, added].sort((a, b) => a.guestAddress - b.guestAddress);
    try {
      return new MemoryTable(regions, memoryOf(regions));
    } catch (error) {
      libc.munmap(added.mapping);
      throw error;
    }
  }

  /** REM_MEM_REG: the table without the region at guestAddress/size, and a release for it. */
  withoutRegion(guestAddress: number, size: number): { table: MemoryTable; releaseRemoved: () => void } {
    const index = this.regions.findIndex((r) => r.guestAddress === guestAddress && r.size === size);
    if (index < 0) throw new MemoryTableError(`no region at 0x${guestAddress.toString(16)} + ${size}`);
    const removed = this.regions[index]!;
    const regions = this.regions.filter((_, i) => i !== index);
    return { table: new MemoryTable(regions, memoryOf(regions)), releaseRemoved: () => libc.munmap(removed.mapping) };
  }

  /**
   * True if every region's file is sealed against shrinking (QEMU memfd backends are, with
   * seal=on): otherwise the front end could truncate it under our mapping (SIGBUS).
   */
  static sealed(fds: readonly number[]): boolean {
    return fds.every((fd) => {
      const seals = fcntl(fd, F_GET_SEALS, 0);
      return seals >= 0 && (seals & F_SEAL_SHRINK) !== 0;
    });
  }

  get descriptions(): readonly MemoryRegionDescription[] {
    return this.regions.map(({ guestAddress, size, userAddress, mmapOffset }) => ({ guestAddress, size, userAddress, mmapOffset }));
  }

  get regionCount(): number {
    return this.regions.length;
  }

  /** Front-end virtual address -> guest physical address, or undefined if not in any region. */
  translate(userAddress: bigint): number | undefined {
    for (const r of this.regions) {
      if (userAddress >= r.userAddress && userAddress < r.userAddress + BigInt(r.size)) {
        return r.guestAddress + Number(userAddress - r.userAddress);
      }
    }
    return undefined;
  }

  /** Unmaps every region. The GuestMemory must no longer be used by anyone. */
  release(): void {
    for (const r of this.regions) libc.munmap(r.mapping);
  }
}

function validate(d: MemoryRegionDescription, fd: number): void {
  if (d.size <= 0 || !Number.isSafeInteger(d.size) || !Number.isSafeInteger(d.guestAddress) || d.guestAddress + d.size > MAX_GUEST_ADDRESS) {
    throw new MemoryTableError(`region at 0x${d.guestAddress.toString(16)} + ${d.size} is not a valid guest range`);
  }
  if (!Number.isSafeInteger(d.mmapOffset) || d.mmapOffset < 0) throw new MemoryTableError(`region at 0x${d.guestAddress.toString(16)}: bad mmap offset`);
  // A mapping past the end of the file would SIGBUS on first touch and kill the process:
  // every region must lie inside its file as it is now.
  let fileSize: number;
  try {
    fileSize = fstatSync(fd).size;
  } catch {
    throw new MemoryTableError('a memory region descriptor cannot be inspected');
  }
  if (d.mmapOffset + d.size > fileSize) {
    throw new MemoryTableError(`region at 0x${d.guestAddress.toString(16)}: offset ${d.mmapOffset} + ${d.size} bytes is beyond its file (${fileSize} bytes)`);
  }
}

function mapRegion(d: MemoryRegionDescription, fd: number): MappedRegion {
  const delta = d.mmapOffset % PAGE_SIZE;
  try {
    const mapping = libc.mmap(d.size + delta, libc.PROT_READ | libc.PROT_WRITE, libc.MAP_SHARED | libc.MAP_NORESERVE, fd, d.mmapOffset - delta);
    return { ...d, mapping, delta };
  } catch (error) {
    if (error instanceof libc.SystemCallError) throw new MemoryTableError(`cannot map guest memory: ${error.message}`);
    throw error;
  }
}

function memoryOf(regions: readonly MappedRegion[]): GuestMemory {
  const backings: RegionBacking[] = regions.map((r) => {
    const buffers: ArrayBuffer[] = [];
    for (let off = 0; off < r.size; off += MAX_VIEW_BYTES) {
      buffers.push(libc.viewOf(r.mapping.address + BigInt(r.delta + off), Math.min(MAX_VIEW_BYTES, r.size - off)));
    }
    return { region: { start: r.guestAddress as GuestAddress, size: r.size, fd: -1, fdOffset: r.mmapOffset, hostAddress: r.mapping.address + BigInt(r.delta) }, buffers };
  });
  return new GuestMemory(backings);
}
