import { errorText } from './redact.js';

/**
 * One broker connection kept for one Publisher: opened lazily by the first publish that needs it,
 * reopened after it drops or fails to open, with a backoff between failed tries. Between tries
 * every publish fails at once with the last reason: a broker that is down costs one connection
 * attempt per backoff step, not one per publish, and nothing waits on it.
 *
 * Purely lazy: no timer runs while nobody publishes, so a destination nobody sends to holds
 * nothing but this object.
 */

/** What a broker module tells the keeper about its connections. */
export interface BrokerLink<C> {
  /** Opens one connection; calls `dropped(reason)` if it later closes on its own. */
  open(dropped: (reason: string) => void): Promise<C>;
  /**
   * Closes a connection (the keeper bounds the wait); `reason` is what publishes still on it fail
   * with, as `connection lost: <reason>`.
   */
  close(connection: C, reason: string): Promise<void>;
  /** Why an open failed, in a short text with no secret in it. */
  describeOpenError(error: unknown): string;
}

/** Backoff after the n-th consecutive failure (n >= 1): 0.5 s doubling to 30 s, ±20% jitter within the cap. */
export function backoffMs(failures: number): number {
  const base = Math.min(30_000 / 1.2, 500 * 2 ** Math.min(failures - 1, 16));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

export class ConnectionKeeper<C> {
  private connection: C | null = null;
  private opening: Promise<C> | null = null;
  /** Which open the current connection (or the one under way) came from: drops of older ones are stale. */
  private generation = 0;
  private lastError = '';
  private retryAt = 0;
  /** Failed opens and drops since a publish last went through. */
  private failures = 0;
  /** When the connection last proved to work: opened, or a publish went through. */
  private progressAt = 0;
  private closed = false;

  constructor(
    private readonly link: BrokerLink<C>,
    private readonly openTimeoutMs: number,
  ) {}

  /** The open connection, a connection being opened (rejects with the reason), or the reason to fail at once. */
  get(): C | Promise<C> | string {
    if (this.connection !== null) return this.connection;
    if (this.closed) return 'closed';
    if (this.opening !== null) return this.opening;
    if (performance.now() < this.retryAt) return this.lastError;
    return this.startOpening();
  }

  /** A publish went through: the next failure starts the backoff from its first step. */
  working(): void {
    this.failures = 0;
    this.progressAt = performance.now();
  }

  /**
   * Publishes timed out. A connection that has confirmed nothing for a whole timeout is given up
   * and reopened: a peer that vanished without closing (a partition, a hung broker) is otherwise
   * noticed only by heartbeats, if the protocol has them (Redis has none).
   */
  timedOut(): void {
    const connection = this.connection;
    if (connection === null || performance.now() - this.progressAt < this.openTimeoutMs) return;
    this.connection = null;
    this.generation++; // its own close, when it comes, is not news
    const reason = `no answer within ${this.openTimeoutMs} ms`;
    this.lose(reason);
    void this.closeBounded(connection, reason);
  }

  /** Closes the connection (bounded by the open timeout); later get() answers 'closed'. */
  async close(): Promise<void> {
    this.closed = true;
    const connection = this.connection;
    this.connection = null;
    this.generation++;
    if (connection !== null) await this.closeBounded(connection, 'closed');
  }

  private startOpening(): Promise<C> {
    const generation = ++this.generation;
    // A drop before the keeper holds the connection (between the client's open and ours) fails the open.
    let lostWhileOpening: string | null = null;
    const dropped = (reason: string): void => {
      if (generation !== this.generation) return;
      if (this.connection === null) {
        lostWhileOpening ??= reason;
        return;
      }
      this.connection = null;
      this.lose(reason);
    };
    const opening = new Promise<C>((resolve, reject) => {
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        reject(new Error(`no connection within ${this.openTimeoutMs} ms`));
      }, this.openTimeoutMs);
      this.link.open(dropped).then(
        (connection) => {
          clearTimeout(timer);
          if (timedOut || this.closed || generation !== this.generation || lostWhileOpening !== null) {
            void this.closeBounded(connection, 'closed'); // too late or dead: nobody will use it
            if (!timedOut)
              reject(new Error(lostWhileOpening === null ? 'closed' : `connection lost: ${lostWhileOpening}`));
            return;
          }
          resolve(connection);
        },
        (error: unknown) => {
          clearTimeout(timer);
          if (!timedOut) reject(new Error(this.link.describeOpenError(error)));
        },
      );
    });
    this.opening = opening;
    opening.then(
      (connection) => {
        this.opening = null;
        this.connection = connection;
        this.progressAt = performance.now();
      },
      (error: Error) => {
        if (this.opening === opening) this.opening = null;
        if (this.closed) return;
        this.failures++;
        this.lastError = errorText(error);
        this.retryAt = performance.now() + backoffMs(this.failures);
      },
    );
    return opening;
  }

  /** The connection is gone: the first loss of a working one reconnects at the next publish, repeated ones back off. */
  private lose(reason: string): void {
    this.failures++;
    this.lastError = `connection lost: ${reason}`;
    this.retryAt = this.failures === 1 ? 0 : performance.now() + backoffMs(this.failures - 1);
  }

  private async closeBounded(connection: C, reason: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.openTimeoutMs);
    });
    try {
      await Promise.race([this.link.close(connection, reason).catch(() => undefined), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}
