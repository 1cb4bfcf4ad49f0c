// The guest physical memory map of an x86-64 novm machine. RAM fills [0, 3 GiB); anything
// beyond continues at 4 GiB. The 1 GiB hole below 4 GiB holds every MMIO window:
//
//   0xC000_0000 - 0xDFFF_FFFF  32-bit PCI BAR window (virtio-pci BARs)
//   0xD000_0000 - ...          virtio-mmio devices (inside the window's top half, 4 KiB each)
//   0xE000_0000 - 0xEFFF_FFFF  PCI ECAM (MCFG), 256 buses x 32 devices x 8 functions x 4 KiB
//   0xFEC0_0000                IOAPIC
//   0xFEE0_0000                local APICs
import { GiB, MiB, type GuestAddress } from './address.js';

export const MMIO_HOLE_START = 3 * GiB;
export const MMIO_HOLE_END = 4 * GiB;
export const PCI_MMIO_START = 0xc000_0000;
export const PCI_MMIO_SIZE = 256 * MiB;
export const VIRTIO_MMIO_START = 0xd000_0000;
export const VIRTIO_MMIO_STRIDE = 0x1000;
export const PCI_ECAM_START = 0xe000_0000;
export const PCI_ECAM_SIZE = 256 * MiB;
export const IOAPIC_START = 0xfec0_0000;
export const LAPIC_START = 0xfee0_0000;
/** Identity-mapped TSS and EPT pages KVM needs on Intel hosts (KVM_SET_TSS_ADDR etc.). */
export const KVM_TSS_START = 0xfffb_c000;
export const KVM_IDENTITY_MAP_START = 0xfffb_f000;
export const HIGH_RAM_START = 4 * GiB;

/** Minimum and maximum RAM novm accepts. */
export const MIN_RAM = 16 * MiB;
export const MAX_RAM = 1024 * GiB;

export interface RamRange {
  readonly start: GuestAddress;
  readonly size: number;
}

/** Splits `ramBytes` of RAM around the MMIO hole. */
export function ramLayout(ramBytes: number): RamRange[] {
  if (!Number.isSafeInteger(ramBytes) || ramBytes < MIN_RAM || ramBytes > MAX_RAM) {
    throw new RangeError(`memory size must be between ${MIN_RAM / MiB} MiB and ${MAX_RAM / GiB} GiB`);
  }
  if (ramBytes % (4096) !== 0) throw new RangeError('memory size must be a multiple of 4 KiB');
  const low = Math.min(ramBytes, MMIO_HOLE_START);
  const ranges: RamRange[] = [{ start: 0 as GuestAddress, size: low }];
  if (ramBytes > low) ranges.push({ start: HIGH_RAM_START as GuestAddress, size: ramBytes - low });
  return ranges;
}
