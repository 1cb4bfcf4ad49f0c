// What the virtio-net device model needs from a host tap: frames in, frames out, a one-shot
// "readable" notification and offload control. The real adapter is tap-device.ts; tests use a
// fake. Every frame starts with a 12-byte virtio_net_hdr_v1 (TUNSETVNETHDRSZ 12).

/** TUNSETOFFLOAD bits (<linux/if_tun.h>): what the kernel may hand the tap (and so the guest). */
export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;
export const TUN_F_TSO_ECN = 0x08;
export const TUN_F_UFO = 0x10;
export const TUN_F_USO4 = 0x20;
export const TUN_F_USO6 = 0x40;

export interface TapPort {
  /** Offload bits this tap accepts (probed when it was opened). */
  readonly supportedOffloads: number;
  /**
   * Reads one frame (virtio-net header + Ethernet frame) into `buffer`; returns its length,
   * or 0 when no frame is waiting. Never blocks.
   */
  read(buffer: Uint8Array): number;
  /** Writes one frame (header + Ethernet frame). Returns false if the tap dropped it. */
  write(frame: Uint8Array): boolean;
  /** One-shot: call `handler` once, soon after a frame is waiting. Re-arm after each call. */
  armReadable(handler: () => void): void;
  /** TUNSETOFFLOAD with a subset of supportedOffloads. */
  setOffloads(flags: number): void;
  close(): void;
}
