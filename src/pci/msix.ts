// MSI-X (PCI 3.0 section 6.8.2): the capability's control word, a vector table of 16-byte
// entries {address lo, address hi, data, vector control} and the pending bit array. A vector
// that fires while masked (its own mask bit or the function mask) becomes pending and is sent
// when unmasked. Table and PBA accesses come from the guest through a BAR: bounds-checked,
// DWORD or QWORD aligned (6.8.2: other accesses are undefined; novm drops them).
import type { PciConfigSpace } from './config-space.js';

export const PCI_CAP_ID_MSIX = 0x11;
const ENTRY_SIZE = 16;
const VECTOR_CONTROL_MASKED = 1;
const CONTROL_ENABLE = 0x8000;
const CONTROL_FUNCTION_MASK = 0x4000;
/** PCI 3.0 6.8.2.3: the table size field is 11 bits. */
export const MSIX_MAX_VECTORS = 2048;

export type MsiSink = (address: bigint, data: number) => void;

export class MsixTable {
  readonly table: Uint8Array;
  readonly pba: Uint8Array;
  private readonly tableView: DataView;
  private readonly capabilityOffset: number;
  enabled = false;
  functionMasked = false;
  /** Messages sent (a metric, and what tests look at). */
  sent = 0;

  /**
   * Adds the capability to `config`: the table at `tableOffset` and the PBA at `pbaOffset`,
   * both in BAR `bar` (offsets 8-byte aligned).
   */
  constructor(
    readonly vectorCount: number,
    config: PciConfigSpace,
    bar: number,
    tableOffset: number,
    pbaOffset: number,
    private readonly sink: MsiSink,
  ) {
    if (!Number.isInteger(vectorCount) || vectorCount < 1 || vectorCount > MSIX_MAX_VECTORS) throw new RangeError(`bad MSI-X vector count ${vectorCount}`);
    this.table = new Uint8Array(vectorCount * ENTRY_SIZE);
    this.tableView = new DataView(this.table.buffer);
    this.pba = new Uint8Array(Math.ceil(vectorCount / 64) * 8);
    this.capabilityOffset = config.addCapability(PCI_CAP_ID_MSIX, 12, {
      afterWrite: () => this.controlWritten(config),
    });
    const at = this.capabilityOffset;
    config.view.setUint16(at + 2, vectorCount - 1, true);
    config.view.setUint32(at + 4, (tableOffset | bar) >>> 0, true);
    config.view.setUint32(at + 8, (pbaOffset | bar) >>> 0, true);
    config.setWriteMask(at + 2, 2, CONTROL_ENABLE | CONTROL_FUNCTION_MASK);
    this.resetTable();
  }

  /** Power-on state: every vector masked, nothing pending (6.8.2.9). */
  resetTable(): void {
    this.table.fill(0);
    this.pba.fill(0);
    for (let v = 0; v < this.vectorCount; v++) this.tableView.setUint32(v * ENTRY_SIZE + 12, VECTOR_CONTROL_MASKED, true);
  }

  /** Snapshot: the vector table and pending bits (the control word lives in config space). */
  state(): { table: string; pba: string } {
    return { table: Buffer.from(this.table).toString('base64'), pba: Buffer.from(this.pba).toString('base64') };
  }

  /** Restores table and PBA; call after the config space bytes are back. */
  restore(state: { table: string; pba: string }, config: PciConfigSpace): void {
    const table = Buffer.from(String(state.table), 'base64');
    const pba = Buffer.from(String(state.pba), 'base64');
    if (table.length !== this.table.length || pba.length !== this.pba.length) throw new RangeError('MSI-X snapshot does not match the vector count');
    this.table.set(table);
    this.pba.set(pba);
    const control = config.view.getUint16(this.capabilityOffset + 2, true);
    this.enabled = (control & CONTROL_ENABLE) !== 0;
    this.functionMasked = (control & CONTROL_FUNCTION_MASK) !== 0;
  }

  private controlWritten(config: PciConfigSpace): void {
    const control = config.view.getUint16(this.capabilityOffset + 2, true);
    const wasMasked = !this.enabled || this.functionMasked;
    this.enabled = (control & CONTROL_ENABLE) !== 0;
    this.functionMasked = (control & CONTROL_FUNCTION_MASK) !== 0;
    if (wasMasked && this.enabled && !this.functionMasked) {
      for (let v = 0; v < this.vectorCount; v++) this.deliverIfPending(v);
    }
  }

  isVectorMasked(vector: number): boolean {
    return (this.tableView.getUint32(vector * ENTRY_SIZE + 12, true) & VECTOR_CONTROL_MASKED) !== 0;
  }

  isPending(vector: number): boolean {
    return (this.pba[vector >>> 3]! & (1 << (vector & 7))) !== 0;
  }

  /** Raises `vector`. Returns false if MSI-X is off or the vector does not exist. */
  signal(vector: number): boolean {
    if (!this.enabled || !Number.isInteger(vector) || vector < 0 || vector >= this.vectorCount) return false;
    if (this.functionMasked || this.isVectorMasked(vector)) {
      this.pba[vector >>> 3]! |= 1 << (vector & 7);
      return true;
    }
    this.send(vector);
    return true;
  }

  private send(vector: number): void {
    const base = vector * ENTRY_SIZE;
    const low = this.tableView.getUint32(base, true);
    const high = this.tableView.getUint32(base + 4, true);
    const data = this.tableView.getUint32(base + 8, true);
    this.sent++;
    this.sink((BigInt(high) << 32n) | BigInt(low), data);
  }

  private deliverIfPending(vector: number): void {
    if (!this.isPending(vector) || this.isVectorMasked(vector) || !this.enabled || this.functionMasked) return;
    this.pba[vector >>> 3]! &= ~(1 << (vector & 7));
    this.send(vector);
  }

  readTable(offset: number, data: Uint8Array): void {
    if (!validAccess(offset, data.length, this.table.length)) {
      data.fill(0xff);
      return;
    }
    data.set(this.table.subarray(offset, offset + data.length));
  }

  writeTable(offset: number, data: Uint8Array): boolean {
    if (!validAccess(offset, data.length, this.table.length)) return false;
    this.table.set(data, offset);
    // Unmasking a vector with its pending bit set sends it now (6.8.2.9).
    const first = Math.floor(offset / ENTRY_SIZE);
    const last = Math.floor((offset + data.length - 1) / ENTRY_SIZE);
    for (let v = first; v <= last; v++) this.deliverIfPending(v);
    return true;
  }

  readPba(offset: number, data: Uint8Array): void {
    if (!validAccess(offset, data.length, this.pba.length)) {
      data.fill(0xff);
      return;
    }
    data.set(this.pba.subarray(offset, offset + data.length));
  }
}

function validAccess(offset: number, length: number, size: number): boolean {
  return (length === 4 || length === 8) && offset % length === 0 && offset >= 0 && offset + length <= size;
}
