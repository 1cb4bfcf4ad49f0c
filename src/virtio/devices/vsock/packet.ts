// struct virtio_vsock_hdr (virtio 1.2 section 5.10.6): 44 bytes, little-endian, in front of
// every packet on the rx and tx queues. One reusable PacketHeader per direction: no
// allocation per packet.

export const VSOCK_HEADER_SIZE = 44;
export const VSOCK_HOST_CID = 2;
export const VSOCK_TYPE_STREAM = 1;

export const enum VsockOp {
  Invalid = 0,
  Request = 1,
  Response = 2,
  Rst = 3,
  Shutdown = 4,
  Rw = 5,
  CreditUpdate = 6,
  CreditRequest = 7,
}

/** SHUTDOWN flags: the sender will receive / send no more. */
export const SHUTDOWN_RCV = 1;
export const SHUTDOWN_SEND = 2;

export class PacketHeader {
  readonly bytes = new Uint8Array(VSOCK_HEADER_SIZE);
  private readonly view = new DataView(this.bytes.buffer);

  /** CIDs are u64; a double holds every value the spec allows (guest CIDs are < 2^32). */
  get srcCid(): number { return Number(this.view.getBigUint64(0, true)); }
  set srcCid(v: number) { this.view.setBigUint64(0, BigInt(v), true); }
  get dstCid(): number { return Number(this.view.getBigUint64(8, true)); }
  set dstCid(v: number) { this.view.setBigUint64(8, BigInt(v), true); }
  get srcPort(): number { return this.view.getUint32(16, true); }
  set srcPort(v: number) { this.view.setUint32(16, v >>> 0, true); }
  get dstPort(): number { return this.view.getUint32(20, true); }
  set dstPort(v: number) { this.view.setUint32(20, v >>> 0, true); }
  get len(): number { return this.view.getUint32(24, true); }
  set len(v: number) { this.view.setUint32(24, v >>> 0, true); }
  get type(): number { return this.view.getUint16(28, true); }
  set type(v: number) { this.view.setUint16(28, v, true); }
  get op(): number { return this.view.getUint16(30, true); }
  set op(v: number) { this.view.setUint16(30, v, true); }
  get flags(): number { return this.view.getUint32(32, true); }
  set flags(v: number) { this.view.setUint32(32, v >>> 0, true); }
  get bufAlloc(): number { return this.view.getUint32(36, true); }
  set bufAlloc(v: number) { this.view.setUint32(36, v >>> 0, true); }
  get fwdCnt(): number { return this.view.getUint32(40, true); }
  set fwdCnt(v: number) { this.view.setUint32(40, v >>> 0, true); }

  clear(): void {
    this.bytes.fill(0);
  }
}
