/** A compressed payload that cannot be decoded (corrupt, truncated, or an unsupported variant). */
export class DecompressError extends Error {
  readonly kind = 'decompress' as const;
}
