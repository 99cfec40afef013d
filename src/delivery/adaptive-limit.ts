/**
 * How many requests one endpoint gets in flight, adapted to what the endpoint shows: AIMD with a
 * latency signal, the way TCP finds a link's capacity (docs/WEBHOOKS.md, "Concurrency").
 *
 * - Slow start: from INITIAL, +1 per success (the window doubles every round trip) until the
 *   first sign of congestion, then +1/window per success (+1 per round trip).
 * - A failure (timeout, connection error, any answer but a 2xx) halves the window; a
 *   response much slower than the endpoint's best recent latency takes 10% off. Either at most
 *   once per round trip: the sends already in flight when we backed off carry old news.
 *   Any answer but a 2xx counts: an endpoint that rejects everything gets few requests too.
 *
 * A fast endpoint climbs to the cap within a few milliseconds; a hanging one drops to one
 * request at a time after its first timeouts and holds one socket, not dozens.
 */
const INITIAL = 8;
const MIN = 1;
// A response this many times slower than the endpoint's baseline (and at least SLOW_EXTRA_MS
// slower) counts as queueing at the receiver. SLOW_EXTRA_MS is above the stalls of our own event
// loop under load (20-40 ms, once 106 ms, measured beside a thousand hanging endpoints of another
// org timing out): a latency is measured in this process, so a stall here made every send in
// flight to a nearby 1 ms receiver look congested, and at 20 ms a healthy endpoint left slow start
// at a tenth of its window and got 0.6 of its rate (bench:webhooks, noisy). For a receiver more
// than 50 ms away the factor decides anyway.
const SLOW_FACTOR = 3;
const SLOW_EXTRA_MS = 100;
// The baseline (best recent latency) drifts up this fraction per sample, so it follows an
// endpoint that became slower for good instead of calling it congested forever.
const BASELINE_DRIFT = 0.01;

export type Verdict = 'ok' | 'failed';

export class AdaptiveLimit {
  private window = INITIAL;
  private slowStart = true;
  private baselineMs = Infinity;
  /** Sends started before this sequence number carry news older than the last back-off. */
  private backedOffAt = 0;
  private sequence = 0;

  constructor(private cap: number) {
    this.window = Math.min(INITIAL, cap);
  }

  /** Whole requests allowed in flight now. */
  get current(): number {
    return Math.max(MIN, Math.floor(this.window));
  }

  setCap(cap: number): void {
    this.cap = cap;
    if (this.window > cap) this.window = cap;
  }

  /** A ticket for a send that starts now; pass it back to `completed`. */
  started(): number {
    return ++this.sequence;
  }

  completed(ticket: number, verdict: Verdict, latencyMs: number): void {
    const fresh = ticket > this.backedOffAt;
    if (verdict === 'failed') {
      if (fresh) this.backOff(0.5);
      return;
    }
    if (latencyMs < this.baselineMs) this.baselineMs = latencyMs;
    else this.baselineMs += (latencyMs - this.baselineMs) * BASELINE_DRIFT;
    if (latencyMs > this.baselineMs * SLOW_FACTOR && latencyMs > this.baselineMs + SLOW_EXTRA_MS) {
      if (fresh) this.backOff(0.9);
      return;
    }
    this.window = Math.min(this.cap, this.window + (this.slowStart ? 1 : 1 / this.window));
  }

  private backOff(factor: number): void {
    this.slowStart = false;
    this.window = Math.max(MIN, this.window * factor);
    this.backedOffAt = this.sequence;
  }
}
