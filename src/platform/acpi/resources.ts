// Resource descriptors for _CRS buffers (ACPI 6.5 section 6.4, "Resource Data Types for ACPI").
// Each function returns the raw descriptor bytes; `resourceTemplate` appends the end tag and
// wraps them in an AML Buffer, as ASL's ResourceTemplate() does.
import { buffer, concat, type Aml } from './aml.js';
import { AcpiBuildError } from './errors.js';

function check(value: number, max: number, what: string): number {
  if (!Number.isSafeInteger(value) || value < 0 || value > max) throw new AcpiBuildError('resource', `${what} out of range: ${value}`);
  return value;
}

function bytesLE(view: DataView, at: number, value: number | bigint, size: 1 | 2 | 4 | 8): void {
  if (size === 1) view.setUint8(at, Number(value));
  else if (size === 2) view.setUint16(at, Number(value), true);
  else if (size === 4) view.setUint32(at, Number(value), true);
  else view.setBigUint64(at, BigInt(value), true);
}

/** IO port descriptor, 16-bit decode (6.4.2.5): small item 0x47, length 7. */
export function ioPort(base: number, length: number, alignment = 1): Aml {
  check(base, 0xffff, 'I/O base');
  check(length, 0xff, 'I/O length');
  check(alignment, 0xff, 'I/O alignment');
  const out = new Uint8Array(8);
  const v = new DataView(out.buffer);
  out[0] = 0x47;
  out[1] = 0x01; // decodes 16 address bits
  v.setUint16(2, base, true);
  v.setUint16(4, base, true);
  out[6] = alignment;
  out[7] = length;
  return out;
}

/** IRQ descriptor without flags (6.4.2.1): ISA edge-triggered, active-high, exclusive. */
export function irqNoFlags(irq: number): Aml {
  check(irq, 15, 'ISA IRQ');
  const mask = 1 << irq;
  return Uint8Array.of(0x22, mask & 0xff, mask >> 8);
}

export interface InterruptOptions {
  readonly trigger: 'edge' | 'level';
  readonly polarity: 'high' | 'low';
  readonly shared: boolean;
}

/** Extended Interrupt descriptor (6.4.3.6), one interrupt, consumer. */
export function extendedInterrupt(gsi: number, options: InterruptOptions): Aml {
  check(gsi, 0xffff_ffff, 'interrupt number');
  const out = new Uint8Array(9);
  const v = new DataView(out.buffer);
  out[0] = 0x89;
  v.setUint16(1, 6, true);
  out[3] =
    0x01 | // consumer
    (options.trigger === 'edge' ? 0x02 : 0) |
    (options.polarity === 'low' ? 0x04 : 0) |
    (options.shared ? 0x08 : 0);
  out[4] = 1;
  v.setUint32(5, gsi, true);
  return out;
}

/** Memory32Fixed (6.4.3.4), read-write. */
export function memory32Fixed(base: number, length: number): Aml {
  check(base, 0xffff_ffff, 'memory base');
  check(length, 0xffff_ffff, 'memory length');
  if (base + length > 0x1_0000_0000) throw new AcpiBuildError('resource', 'Memory32Fixed range crosses 4 GiB');
  const out = new Uint8Array(12);
  const v = new DataView(out.buffer);
  out[0] = 0x86;
  v.setUint16(1, 9, true);
  out[3] = 0x01; // read-write
  v.setUint32(4, base, true);
  v.setUint32(8, length, true);
  return out;
}

/** Address space descriptor resource types (6.4.3.5, "Resource Type"). */
const enum AddressSpaceType {
  Memory = 0,
  Io = 1,
  BusNumber = 2,
}

interface AddressSpace {
  readonly type: AddressSpaceType;
  readonly typeFlags: number;
  readonly min: number | bigint;
  readonly length: number | bigint;
  /** true: a bridge producing the range for its children; false: a device consuming it. */
  readonly producer: boolean;
}

/**
 * Word/DWord/QWord address space descriptors (6.4.3.5.3, .2, .1), with fixed minimum and
 * maximum (MinFixed, MaxFixed, PosDecode), granularity 0 and no translation.
 */
function addressSpace(tag: 0x88 | 0x87 | 0x8a, size: 2 | 4 | 8, space: AddressSpace): Aml {
  const min = BigInt(space.min);
  const length = BigInt(space.length);
  const limit = size === 8 ? 0xffff_ffff_ffff_ffffn : (1n << BigInt(size * 8)) - 1n;
  if (length === 0n || min < 0n || min + length - 1n > limit) {
    throw new AcpiBuildError('resource', `address range 0x${min.toString(16)}+0x${length.toString(16)} does not fit a ${size * 8}-bit descriptor`);
  }
  const dataLength = 3 + 5 * size; // type, general flags, type flags, then five fields
  const out = new Uint8Array(3 + dataLength);
  const v = new DataView(out.buffer);
  out[0] = tag;
  v.setUint16(1, dataLength, true);
  out[3] = space.type;
  out[4] = 0x0c | (space.producer ? 0 : 0x01); // MaxFixed | MinFixed, PosDecode
  out[5] = space.typeFlags;
  let at = 6;
  for (const field of [0n, min, min + length - 1n, 0n, length]) {
    bytesLE(v, at, field, size);
    at += size;
  }
  return out;
}

/** WordBusNumber(ResourceProducer, MinFixed, MaxFixed, PosDecode, ...). */
export function wordBusNumber(first: number, last: number): Aml {
  check(first, 0xff, 'first bus');
  check(last, 0xff, 'last bus');
  if (last < first) throw new AcpiBuildError('resource', `bus range ${first}-${last} is empty`);
  return addressSpace(0x88, 2, { type: AddressSpaceType.BusNumber, typeFlags: 0, min: first, length: last - first + 1, producer: true });
}

/** WordIO(ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, ...). */
export function wordIo(base: number, length: number): Aml {
  return addressSpace(0x88, 2, { type: AddressSpaceType.Io, typeFlags: 0x03, min: base, length, producer: true });
}

/**
 * DWordMemory / QWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable,
 * ReadWrite, ...): a bridge's memory window. Non-cacheable because it holds device registers.
 */
export function memoryWindow(base: number | bigint, length: number | bigint, width: 32 | 64): Aml {
  const space = { type: AddressSpaceType.Memory, typeFlags: 0x01, min: base, length, producer: true };
  return width === 32 ? addressSpace(0x87, 4, space) : addressSpace(0x8a, 8, space);
}

/** QWordMemory consumed by a device (for registers above 4 GiB). */
export function memory64Consumer(base: number | bigint, length: number | bigint): Aml {
  return addressSpace(0x8a, 8, { type: AddressSpaceType.Memory, typeFlags: 0x01, min: base, length, producer: false });
}

/** ResourceTemplate() { descriptors }: the descriptors plus an End Tag (6.4.2.9), in a Buffer. */
export function resourceTemplate(descriptors: readonly Aml[]): Aml {
  // Checksum 0 means "the checksum operation succeeded" (6.4.2.9), as iasl emits.
  return buffer(concat([...descriptors, Uint8Array.of(0x79, 0x00)]));
}
