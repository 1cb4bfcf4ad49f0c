// How long a queue thread keeps watching its rings after serving a request before it goes to
// sleep in poll(2): the adaptive busy-poll window, on the model of KVM's halt polling.
//
// Why: a guest waiting for a virtio-fs reply is usually about to send its next request (a
// metadata loop sends one every 100-200 us under QEMU TCG). A thread that sleeps between them
// pays a kick (the driver's notify, an eventfd write in the front end) and a wake-up (the
// scheduler, on this nested host an expensive one) per request; one that watches the ring
// finds the request in memory, and the driver, seeing notifications off, does not kick at all.
// Watching costs CPU, so the window adapts: it grows while requests arrive soon after the last
// one and shrinks to nothing when they do not (an idle guest costs no spinning).

/** The first non-zero window, and the smallest one kept when shrinking (us). */
const GROW_START_US = 10;

export class PollWindow {
  /** The current window (us); 0: sleep at once. */
  private windowUs = 0;
  /** Windows that found a request, windows that ran out, and the time spent in the latter. */
  hits = 0;
  misses = 0;
  missedMs = 0;

  /** @param maxUs the longest window (0: busy polling off). */
  constructor(readonly maxUs: number) {
    if (!Number.isFinite(maxUs) || maxUs < 0) throw new RangeError(`bad poll window ${maxUs}`);
  }

  get us(): number {
    return this.windowUs;
  }

  /** A window found a request. */
  hit(): void {
    this.hits++;
  }

  /** A window ran out after `spentMs` (the thread goes to sleep next). */
  missed(spentMs: number): void {
    this.misses++;
    this.missedMs += spentMs;
  }

  /**
   * The thread slept and a request woke it. `waitedUs` is the whole wait since the last request
   * was served (the window it spun, if any, plus the sleep and the wake-up). The request was
   * posted earlier than that: a sleeping thread also waits for the driver's kick and for the
   * scheduler, which polling would not have. Measured under QEMU TCG on this nested host
   * (metadata loop, a temporary per-request trace): requests found by polling came a median
   * 100-140 us after the previous one, those that had to wake the thread 215-270 us, so kick
   * and wake-up cost ~110 us. So a wait within twice maxUs (the window plus an allowance as
   * large) counts as one polling would have caught, and grows the window (doubling); a longer
   * one shrinks it (halving, then off). Without the allowance a fresh thread stayed in a trap:
   * every request came by kick, every measured wait looked too long to poll for (~6,000
   * requests of a guest's first metadata loop), and the window never opened.
   */
  woke(waitedUs: number): void {
    if (this.maxUs === 0) return;
    if (waitedUs <= 2 * this.maxUs) {
      this.windowUs = Math.min(this.maxUs, Math.max(GROW_START_US, this.windowUs * 2));
    } else {
      const half = this.windowUs / 2;
      this.windowUs = half < GROW_START_US ? 0 : half;
    }
  }
}
