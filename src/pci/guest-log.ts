// Where a device model reports guest misbehaviour. A guest can misbehave in a loop, so the
// default sink prints only the first few lines of each prefix and counts the rest: a hostile
// driver must not be able to fill the host's log (DESIGN rule 6: bump a metric, carry on).
export type GuestLog = (message: string) => void;

export interface CountingLog {
  readonly log: GuestLog;
  /** Every message seen, printed or not. */
  readonly count: () => number;
}

/** Prints the first `limit` messages to stderr with `prefix`, then only counts. */
export function rateLimitedLog(prefix: string, limit = 20): CountingLog {
  let seen = 0;
  return {
    log: (message) => {
      seen++;
      if (seen <= limit) process.stderr.write(`${prefix}: ${message}\n`);
      else if (seen === limit + 1) process.stderr.write(`${prefix}: further guest errors are counted, not printed\n`);
    },
    count: () => seen,
  };
}

/** A log that keeps nothing: for tests that only count through their own sink. */
export const silentLog: GuestLog = () => {};
