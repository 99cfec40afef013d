/**
 * An endpoint's rate_limit_per_sec as a GCRA pacer: starts are spaced 1/rate apart, with a burst
 * allowance of a tenth of a second's worth, so no one-second window ever sees more than
 * rate × 1.1 starts (API.md: ±10%). Every send to an endpoint comes from the one process that
 * holds its lease (delivery_leases), so a local pacer is the limit across processes and nodes.
 */
export class Pacer {
  private readonly intervalMs: number;
  private readonly toleranceMs: number;
  /** Theoretical arrival time of the next start. */
  private tat = 0;

  constructor(ratePerSec: number) {
    this.intervalMs = 1000 / ratePerSec;
    this.toleranceMs = Math.max(0, Math.floor(ratePerSec / 10) - 1) * this.intervalMs;
  }

  /** 0 when a start may happen now (and counts it), else how many ms until one may. */
  tryStart(now: number): number {
    const tat = Math.max(this.tat, now);
    const wait = tat - this.toleranceMs - now;
    if (wait > 0) return Math.ceil(wait);
    this.tat = tat + this.intervalMs;
    return 0;
  }
}
