/**
 * When to replace a dead worker, and when to stop trying (issue 29). Pure: the supervisor feeds it
 * the deaths and readiness of one role's workers with the time, and does what it answers.
 *
 * - Back-off: a worker that dies soon after it started (before it was ready, or within
 *   `healthyMs` of being ready) extends the role's streak, and its replacement waits
 *   baseDelayMs · 2^(streak-1), at most maxDelayMs. A worker that stays ready for healthyMs
 *   ends the streak; one that dies after that is replaced at once.
 * - Give-up: a role "cannot stay up" when `limit` of its workers died before ever becoming
 *   ready (never listened, never connected) within `windowMs`. Workers killed after they had
 *   served never count: an operator or the OOM killer taking out running workers, however
 *   often, is not a start-up crash loop, and replacing them is what the primary is for.
 */
export interface CrashPolicyOptions {
  /** Deaths before ready within windowMs that make the role give up; 0: never give up. */
  limit: number;
  windowMs: number;
  baseDelayMs: number;
  maxDelayMs: number;
  healthyMs: number;
}

export const DEFAULT_BACKOFF = { baseDelayMs: 500, maxDelayMs: 30_000, healthyMs: 5_000 };

export type CrashDecision = { replaceInMs: number } | { giveUp: true; deaths: number };

export class RoleCrashPolicy {
  private streak = 0;
  private startupDeaths: number[] = [];

  constructor(private readonly options: CrashPolicyOptions) {}

  /** A worker of this role has been ready for healthyMs and is still alive. */
  stayedUp(): void {
    this.streak = 0;
  }

  /** A worker died (not asked to): `readyAt` null when it never became ready. */
  died(now: number, readyAt: number | null): CrashDecision {
    if (readyAt === null) {
      this.startupDeaths = this.startupDeaths.filter((at) => now - at < this.options.windowMs);
      this.startupDeaths.push(now);
      if (this.options.limit > 0 && this.startupDeaths.length >= this.options.limit) {
        return { giveUp: true, deaths: this.startupDeaths.length };
      }
    } else if (now - readyAt >= this.options.healthyMs) {
      this.streak = 0;
      return { replaceInMs: 0 };
    }
    this.streak++;
    return { replaceInMs: Math.min(this.options.maxDelayMs, this.options.baseDelayMs * 2 ** (this.streak - 1)) };
  }
}
