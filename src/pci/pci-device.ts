// What a PCI function offers the segment: its configuration space and its BAR contents.
// A device never knows where its BARs are unless the segment tells it (DESIGN rule 2).
import type { PciConfigSpace } from './config-space.js';

export interface PciDevice {
  readonly config: PciConfigSpace;
  /** A guest access at `offset` inside BAR `bar`; `data` is 1, 2, 4 or 8 bytes. */
  barRead(bar: number, offset: number, data: Uint8Array): void;
  barWrite(bar: number, offset: number, data: Uint8Array): void;
  /** After every guest config-space write (e.g. to re-evaluate INTx after Command changes). */
  configWritten?(offset: number, length: number): void;
  /** The segment (un)mapped a BAR: `address` is its guest physical base, or undefined. */
  barMoved?(bar: number, address: number | undefined): void;
}

/** Where a BAR is decoded right now. */
export interface BarMapping {
  readonly slot: number;
  readonly bar: number;
  readonly address: number;
  readonly size: number;
}

/** The machine's view of BAR (re)programming, e.g. to move ioeventfds. */
export interface BarObserver {
  barMapped(device: PciDevice, mapping: BarMapping): void;
  barUnmapped(device: PciDevice, mapping: BarMapping): void;
}
