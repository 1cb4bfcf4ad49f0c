// Driver misbehaviour found while reading a virtqueue. It is never a host failure: the device
// catches it, logs it once and asks the transport for DEVICE_NEEDS_RESET (virtio 1.2 §2.1.2).

export type QueueViolationCode =
  | 'bad-queue-size'
  | 'ring-out-of-memory'
  | 'ring-misaligned'
  | 'avail-index-jump'
  | 'descriptor-index'
  | 'chain-too-long'
  | 'buffer-out-of-memory'
  | 'chain-too-large'
  | 'readable-after-writable'
  | 'indirect-not-negotiated'
  | 'indirect-with-next'
  | 'nested-indirect'
  | 'indirect-table-size'
  | 'used-overflow';

export class QueueViolation extends Error {
  readonly kind = 'queue-violation' as const;
  constructor(readonly code: QueueViolationCode, detail: string) {
    super(`virtqueue violation (${code}): ${detail}`);
    this.name = 'QueueViolation';
  }
}

export function isQueueViolation(error: unknown): error is QueueViolation {
  return error instanceof QueueViolation;
}
