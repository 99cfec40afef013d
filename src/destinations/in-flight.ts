import type { SendOutcome } from '../delivery/transport.js';

/**
 * The publishes a Publisher has started and not yet settled, each bounded by the same timeout.
 *
 * Every publish of one Publisher shares `timeoutMs`, so deadlines expire in the order publishes
 * started: one FIFO list and one timer (armed at the oldest deadline) bound them all, instead of
 * a timer per publish. A publish settles once: by the broker's answer, by its deadline, or by
 * close(), whichever comes first; later answers find it settled and are ignored.
 */
export class PendingPublish {
  settled = false;
  /** The next publish in start order (the deadline list). */
  next: PendingPublish | null = null;
  resolve!: (outcome: SendOutcome) => void;
  readonly outcome: Promise<SendOutcome>;

  constructor(readonly startedAt: number) {
    this.outcome = new Promise<SendOutcome>((resolve) => {
      this.resolve = resolve;
    });
  }
}

export class InFlightPublishes {
  private oldest: PendingPublish | null = null;
  private newest: PendingPublish | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly timeoutError: string;

  constructor(
    private readonly timeoutMs: number,
    /** Says what did not arrive in time: "no publisher confirm". */
    awaited: string,
    /** Called once per sweep that failed publishes by their deadline. */
    private readonly onTimeouts: () => void = () => {},
  ) {
    this.timeoutError = `timeout: ${awaited} within ${timeoutMs} ms`;
  }

  /** Starts tracking one publish; `outcome` settles by succeed(), fail(), the deadline or failAll(). */
  begin(): PendingPublish {
    const pending = new PendingPublish(performance.now());
    if (this.newest === null) {
      this.oldest = pending;
      this.newest = pending;
      this.timer?.ref();
    } else {
      this.newest.next = pending;
      this.newest = pending;
    }
    if (this.timer === null) this.arm(pending.startedAt);
    return pending;
  }

  succeed(pending: PendingPublish): void {
    if (pending.settled) return;
    pending.settled = true;
    pending.resolve({
      ok: true,
      status: null,
      latencyMs: performance.now() - pending.startedAt,
      error: null,
      retryAfter: undefined,
    });
    if (pending === this.oldest) this.dropSettledHead();
  }

  fail(pending: PendingPublish, error: string): void {
    if (pending.settled) return;
    this.settleFailed(pending, error);
    if (pending === this.oldest) this.dropSettledHead();
  }

  /** Settles as failed without touching the list: for the sweeps that walk it themselves. */
  private settleFailed(pending: PendingPublish, error: string): void {
    pending.settled = true;
    pending.resolve({
      ok: false,
      status: null,
      latencyMs: performance.now() - pending.startedAt,
      error,
      retryAfter: undefined,
    });
  }

  /**
   * Confirms mostly arrive in publish order, so trimming settled publishes off the head keeps the
   * list about as long as the publishes really in flight. The timer stays armed (unreferenced
   * while the list is empty): when it fires early for a head that is gone, expire() re-arms it
   * for the new head.
   */
  private dropSettledHead(): void {
    let pending = this.oldest;
    while (pending?.settled) {
      const next = pending.next;
      pending.next = null;
      pending = next;
    }
    this.oldest = pending;
    if (pending === null) {
      this.newest = null;
      // Nothing left to bound: the timer must not keep the process alive.
      this.timer?.unref();
    }
  }

  /** Fails every unsettled publish at once (close()). */
  failAll(error: string): void {
    let pending = this.oldest;
    this.oldest = null;
    this.newest = null;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    while (pending !== null) {
      if (!pending.settled) this.settleFailed(pending, error);
      const next = pending.next;
      pending.next = null;
      pending = next;
    }
  }

  /** The number of publishes in the deadline list, settled ones not yet dropped included (tests). */
  get tracked(): number {
    let count = 0;
    for (let pending = this.oldest; pending !== null; pending = pending.next) count++;
    return count;
  }

  private arm(oldestStart: number): void {
    const wait = Math.max(0, oldestStart + this.timeoutMs - performance.now());
    this.timer = setTimeout(this.expire, wait);
  }

  /** Drops settled publishes from the head, fails the expired ones, re-arms for the next deadline. */
  private readonly expire = (): void => {
    this.timer = null;
    const now = performance.now();
    let pending = this.oldest;
    let expired = 0;
    while (pending !== null && (pending.settled || pending.startedAt + this.timeoutMs <= now + 1)) {
      const next = pending.next;
      if (!pending.settled) {
        expired++;
        this.settleFailed(pending, this.timeoutError);
      }
      pending.next = null;
      pending = next;
    }
    this.oldest = pending;
    if (pending === null) this.newest = null;
    else this.arm(pending.startedAt);
    if (expired > 0) this.onTimeouts();
  };
}
