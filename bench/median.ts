// The median of a benchmark's rounds (the mean of the middle two for an even count): the figure
// bench:fs and bench:virtiofs print, since this host's load drifts between rounds.
export function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
