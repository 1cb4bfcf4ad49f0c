// A device on a PIO or MMIO bus. It never knows its own address: the bus passes the offset
// from the start of the range the device was registered at. `data` is the access (1, 2, 4 or
// 8 bytes, little-endian); a read fills it. Devices must not keep `data`: the bus reuses it.
export interface BusDevice {
  read(offset: number, data: Uint8Array): void;
  write(offset: number, data: Uint8Array): void;
}

/** An interrupt line the device raises; the machine decides what it is wired to. */
export interface InterruptLine {
  /** Level-triggered lines (ISA/IOAPIC level, INTx): assert or deassert. */
  setLevel(high: boolean): void;
  /** Edge-triggered lines and MSI: one interrupt. */
  trigger(): void;
}
