// Transport-independent feature bits (virtio 1.2 §6) that the queue layer itself honours.
export const VIRTIO_F_INDIRECT_DESC = 1n << 28n;
export const VIRTIO_F_EVENT_IDX = 1n << 29n;
export const VIRTIO_F_VERSION_1 = 1n << 32n;
export const VIRTIO_F_ACCESS_PLATFORM = 1n << 33n;
export const VIRTIO_F_RING_PACKED = 1n << 34n;

/** Feature bits every novm device offers on top of its own. */
export const QUEUE_FEATURES = VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC | VIRTIO_F_EVENT_IDX;

export function hasFeature(features: bigint, bit: bigint): boolean {
  return (features & bit) !== 0n;
}
