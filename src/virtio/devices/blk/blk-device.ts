// virtio-blk (virtio 1.2 §5.2) over a BlockBackend. Each request is a chain: a 16-byte
// device-readable header {type u32, reserved u32, sector u64}, then data (readable for OUT,
// writable for IN), then one device-writable status byte as the chain's last byte.
// Malformed requests get VIRTIO_BLK_S_IOERR / UNSUPP; only a broken ring means NEEDS_RESET.
import type { GuestMemory } from '../../../memory/guest-memory.js';
import type { DescriptorChain } from '../../queue/descriptor-chain.js';
import { QueueDevice, queueFeatures, type DeviceOptions } from '../queue-device.js';
import type { BlockBackend } from './block-backend.js';

export const VIRTIO_ID_BLOCK = 2;

export const VIRTIO_BLK_F_SIZE_MAX = 1n << 1n;
export const VIRTIO_BLK_F_SEG_MAX = 1n << 2n;
export const VIRTIO_BLK_F_RO = 1n << 5n;
export const VIRTIO_BLK_F_BLK_SIZE = 1n << 6n;
export const VIRTIO_BLK_F_FLUSH = 1n << 9n;
export const VIRTIO_BLK_F_TOPOLOGY = 1n << 10n;
export const VIRTIO_BLK_F_MQ = 1n << 12n;
export const VIRTIO_BLK_F_DISCARD = 1n << 13n;
export const VIRTIO_BLK_F_WRITE_ZEROES = 1n << 14n;

export const VIRTIO_BLK_T_IN = 0;
export const VIRTIO_BLK_T_OUT = 1;
export const VIRTIO_BLK_T_FLUSH = 4;
export const VIRTIO_BLK_T_GET_ID = 8;
export const VIRTIO_BLK_T_DISCARD = 11;
export const VIRTIO_BLK_T_WRITE_ZEROES = 13;

export const VIRTIO_BLK_S_OK = 0;
export const VIRTIO_BLK_S_IOERR = 1;
export const VIRTIO_BLK_S_UNSUPP = 2;

const SECTOR = 512;
const HEADER_BYTES = 16;
const SEGMENT_BYTES = 16;
const ID_BYTES = 20;
/** Largest single segment the driver may use (size_max) and the discard/zeroes limits. */
const SIZE_MAX = 1 << 20;
const MAX_DISCARD_SECTORS = 1 << 22; // 2 GiB per segment
const MAX_DISCARD_SEGMENTS = 16;
const DISCARD_ALIGNMENT_SECTORS = 8; // 4 KiB
/** §5.2.4 configuration layout up to write_zeroes_may_unmap (60 bytes). */
const CONFIG_SIZE = 60;

export interface BlkOptions extends DeviceOptions {
  /** Number of request queues (VIRTIO_BLK_F_MQ when > 1). */
  readonly queues?: number;
  readonly queueSize?: number;
  /** GET_ID answer (at most 20 bytes). */
  readonly serial?: string;
}

export class BlkDevice extends QueueDevice {
  readonly deviceType = VIRTIO_ID_BLOCK;
  readonly queueMaxSizes: readonly number[];
  readonly deviceFeatures: bigint;
  readonly configSize = CONFIG_SIZE;
  private readonly config = new Uint8Array(CONFIG_SIZE);
  private readonly header = new Uint8Array(HEADER_BYTES);
  private readonly headerView = new DataView(this.header.buffer);
  private readonly segment = new Uint8Array(SEGMENT_BYTES);
  private readonly segmentView = new DataView(this.segment.buffer);
  private readonly status = new Uint8Array(1);
  private readonly id = new Uint8Array(ID_BYTES);
  private readonly sectors: number;
  // State of the segment callbacks (kept in fields so no closure is made per request).
  private ioPosition = 0;
  private ioOk = true;
  /** Metrics. */
  readonly stats = { requests: 0, reads: 0, writes: 0, flushes: 0, discards: 0, writeZeroes: 0, errors: 0, unsupported: 0 };

  constructor(private readonly backend: BlockBackend, options: BlkOptions = {}) {
    super(options);
    const queues = options.queues ?? 1;
    const queueSize = options.queueSize ?? 128;
    if (!Number.isInteger(queues) || queues < 1 || queues > 0xffff) throw new RangeError(`bad queue count ${queues}`);
    this.queueMaxSizes = new Array<number>(queues).fill(queueSize);
    this.sectors = Math.floor(backend.size / SECTOR);
    let features = queueFeatures(options) | VIRTIO_BLK_F_SIZE_MAX | VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_TOPOLOGY;
    if (backend.readonly) features |= VIRTIO_BLK_F_RO;
    else features |= VIRTIO_BLK_F_DISCARD | VIRTIO_BLK_F_WRITE_ZEROES;
    if (queues > 1) features |= VIRTIO_BLK_F_MQ;
    this.deviceFeatures = features;
    const c = new DataView(this.config.buffer);
    c.setBigUint64(0, BigInt(this.sectors), true);
    c.setUint32(8, SIZE_MAX, true);
    // seg_max: two descriptors of each chain carry the header and the status (§5.2.6.1).
    // QEMU's vhost-user-blk queues default to 128 entries, the size this is computed for.
    c.setUint32(12, queueSize - 2, true);
    c.setUint32(20, SECTOR, true); // blk_size
    c.setUint8(24, 3); // physical_block_exp: 4 KiB physical blocks
    c.setUint16(26, 8, true); // min_io_size in blk_size units
    c.setUint32(28, 8, true); // opt_io_size
    c.setUint16(34, queues, true);
    c.setUint32(36, MAX_DISCARD_SECTORS, true);
    c.setUint32(40, MAX_DISCARD_SEGMENTS, true);
    c.setUint32(44, DISCARD_ALIGNMENT_SECTORS, true);
    c.setUint32(48, MAX_DISCARD_SECTORS, true);
    c.setUint32(52, MAX_DISCARD_SEGMENTS, true);
    c.setUint8(56, 1); // write_zeroes_may_unmap
    this.id.set(new TextEncoder().encode(options.serial ?? 'novm').subarray(0, ID_BYTES));
  }

  protected get name(): string {
    return 'virtio-blk';
  }

  readConfig(offset: number, data: Uint8Array): void {
    data.fill(0);
    if (offset < 0 || offset >= CONFIG_SIZE) return;
    data.set(this.config.subarray(offset, Math.min(CONFIG_SIZE, offset + data.length)));
  }

  /** The configuration is read-only here (no CONFIG_WCE). */
  writeConfig(): void {}

  protected processQueue(index: number): void {
    this.drain(index, this.serve);
  }

  /** Serves one request; returns the number of bytes written to the guest. */
  private readonly serve = (chain: DescriptorChain, memory: GuestMemory): number => {
    this.stats.requests++;
    // §5.2.6.1: the status is the last writable byte; without one the driver gets nothing back.
    if (chain.writableBytes < 1) {
      this.stats.errors++;
      return 0;
    }
    const dataIn = chain.writableBytes - 1;
    let written = 0;
    let status: number;
    if (chain.readFrom(memory, 0, this.header) < HEADER_BYTES) {
      status = VIRTIO_BLK_S_IOERR;
    } else {
      const type = this.headerView.getUint32(0, true);
      const sector = this.headerView.getBigUint64(8, true);
      const dataOut = chain.readableBytes - HEADER_BYTES;
      switch (type) {
        case VIRTIO_BLK_T_IN:
          this.stats.reads++;
          status = this.transfer(chain, memory, sector, dataIn, true);
          if (status === VIRTIO_BLK_S_OK) written = dataIn;
          break;
        case VIRTIO_BLK_T_OUT:
          this.stats.writes++;
          status = this.backend.readonly ? VIRTIO_BLK_S_IOERR : this.transfer(chain, memory, sector, dataOut, false);
          break;
        case VIRTIO_BLK_T_FLUSH:
          this.stats.flushes++;
          status = this.backend.flush() ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
          break;
        case VIRTIO_BLK_T_GET_ID:
          written = chain.forEachSlice(memory, true, 0, Math.min(ID_BYTES, dataIn), this.copyId);
          status = VIRTIO_BLK_S_OK;
          break;
        case VIRTIO_BLK_T_DISCARD:
        case VIRTIO_BLK_T_WRITE_ZEROES:
          if (type === VIRTIO_BLK_T_DISCARD) this.stats.discards++;
          else this.stats.writeZeroes++;
          status = this.backend.readonly ? VIRTIO_BLK_S_IOERR : this.ranges(chain, memory, type, dataOut);
          break;
        default:
          status = VIRTIO_BLK_S_UNSUPP;
      }
    }
    if (status === VIRTIO_BLK_S_IOERR) this.stats.errors++;
    if (status === VIRTIO_BLK_S_UNSUPP) this.stats.unsupported++;
    this.status[0] = status;
    chain.writeTo(memory, dataIn, this.status);
    return written + 1;
  };

  /** IN/OUT: bounds-checked against the capacity, whole sectors only (§5.2.6.2). */
  private transfer(chain: DescriptorChain, memory: GuestMemory, sector: bigint, length: number, toGuest: boolean): number {
    if (length % SECTOR !== 0 || sector > BigInt(this.sectors) || Number(sector) + length / SECTOR > this.sectors) return VIRTIO_BLK_S_IOERR;
    this.ioPosition = Number(sector) * SECTOR;
    this.ioOk = true;
    chain.forEachSlice(memory, toGuest, toGuest ? 0 : HEADER_BYTES, length, toGuest ? this.readSegment : this.writeSegment);
    return this.ioOk ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
  }

  private readonly readSegment = (bytes: Uint8Array, chainOffset: number): void => {
    if (this.ioOk && !this.backend.read(bytes, this.ioPosition + chainOffset)) this.ioOk = false;
  };

  private readonly writeSegment = (bytes: Uint8Array, chainOffset: number): void => {
    if (this.ioOk && !this.backend.write(bytes, this.ioPosition + chainOffset - HEADER_BYTES)) this.ioOk = false;
  };

  private readonly copyId = (bytes: Uint8Array, chainOffset: number): void => {
    bytes.set(this.id.subarray(chainOffset, chainOffset + bytes.length));
  };

  /** DISCARD / WRITE_ZEROES: a list of {sector u64, num_sectors u32, flags u32} (§5.2.6). */
  private ranges(chain: DescriptorChain, memory: GuestMemory, type: number, length: number): number {
    if (length === 0 || length % SEGMENT_BYTES !== 0 || length / SEGMENT_BYTES > MAX_DISCARD_SEGMENTS) return VIRTIO_BLK_S_UNSUPP;
    for (let at = HEADER_BYTES; at < HEADER_BYTES + length; at += SEGMENT_BYTES) {
      chain.readFrom(memory, at, this.segment);
      const sector = this.segmentView.getBigUint64(0, true);
      const count = this.segmentView.getUint32(8, true);
      const flags = this.segmentView.getUint32(12, true);
      // §5.2.6.2: unknown flags, or unmap on DISCARD, make the request unsupported.
      if ((flags & ~1) !== 0 || (type === VIRTIO_BLK_T_DISCARD && flags !== 0)) return VIRTIO_BLK_S_UNSUPP;
      if (count > MAX_DISCARD_SECTORS || sector > BigInt(this.sectors) || Number(sector) + count > this.sectors) return VIRTIO_BLK_S_IOERR;
      const position = Number(sector) * SECTOR;
      const bytes = count * SECTOR;
      const ok = type === VIRTIO_BLK_T_DISCARD ? this.backend.discard(position, bytes) : this.backend.writeZeroes(position, bytes, flags === 1);
      if (!ok) return VIRTIO_BLK_S_IOERR;
    }
    return VIRTIO_BLK_S_OK;
  }
}
