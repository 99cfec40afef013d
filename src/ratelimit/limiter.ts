import { ApiError } from '../errors.js';
import type { RequestContext } from '../http/context.js';
import { log } from '../log.js';
import type { LeaseResult } from './bucket-math.js';
import type { OrgLimit } from './org-limits.js';
import type { TokenStore } from './store.js';

// A worker holds at most this share of one second's tokens, so tokens parked in an idle worker
// (or a worker that just died) can never skew a 10 s window by more than a few percent.
const LEASE_SHARE = 0.1;
// Lease enough for about this long at the worker's observed demand; top up at half.
const LEASE_HORIZON_S = 0.1;
// Demand is sampled, idle leases are handed back and debts chased on this beat.
const SWEEP_MS = 250;
// Tokens unused this long go back to the shared bucket, where other workers can have them.
const IDLE_RETURN_MS = 500;
// When the shared bucket is short, ask again once it should hold what we asked for, within these bounds.
const MIN_RETRY_MS = 10;
const MAX_RETRY_MS = 1_000;
// A worker's view of the shared bucket older than this is refreshed in the background, so that
// credit decisions (below) rest on recent numbers even for orgs with little traffic here.
const REFRESH_VIEW_MS = 1_000;
// An org unused this long is dropped; its next request re-reads limits and the shared bucket.
const FORGET_IDLE_ORG_MS = 60_000;

/**
 * One org's limit as this worker sees it. `balance` is leased tokens spent locally; it goes
 * negative (a debt, repaid by the next lease) when a request is admitted on the strength of
 * what the shared bucket is known to hold. `storeTokens` is the shared bucket's content at
 * `storeAt` minus our debt, as last reported; it refills at `rate` between reports.
 */
class OrgBucket {
  rate = 1;
  burst = 1;
  maxLease = 1;
  limitHeader: [string, string] = ['RateLimit-Limit', '1'];
  balance = 0;
  storeTokens = 0;
  storeAt = 0;
  leasing = false;
  queued = false;
  retryAt = 0;
  /** Tokens asked for (admitted or not) since the last sweep, and the smoothed rate of that. */
  demand = 0;
  demandPerSec = 0;
  /** Lease target: what this worker tries to hold, from its demand, up to maxLease. */
  target = 0;
  lastUsedAt = 0;

  constructor(
    readonly orgId: string,
    limit: OrgLimit,
  ) {
    this.setLimit(limit);
  }

  setLimit(limit: OrgLimit): void {
    this.rate = limit.rate;
    this.burst = limit.burst;
    this.maxLease = Math.max(1, Math.floor(limit.rate * LEASE_SHARE));
    if (this.target > this.maxLease) this.target = this.maxLease;
    this.limitHeader = ['RateLimit-Limit', String(limit.rate)];
  }

  /**
   * Tokens the shared bucket should hold now, less what we owe it. The refill since the last
   * report is counted only up to one lease's worth: other workers and nodes see the same refill,
   * and each counting all of it would admit it several times over.
   */
  storeEstimate(now: number): number {
    let refill = ((now - this.storeAt) * this.rate) / 1000;
    if (refill > this.maxLease) refill = this.maxLease;
    const tokens = this.storeTokens + refill;
    return tokens < this.burst ? tokens : this.burst;
  }

  /** Seconds until `missing` more tokens should have refilled (a hint for Retry-After). */
  secondsToRefill(missing: number, now: number): number {
    const refilled = ((now - this.storeAt) * this.rate) / 1000 - (this.storeEstimate(now) - this.storeTokens);
    const seconds = Math.ceil((missing - refilled) / this.rate);
    return seconds < 1 ? 1 : seconds;
  }
}

export interface LimiterOptions {
  store: TokenStore;
  loadLimit(orgId: string): Promise<OrgLimit>;
}

/**
 * Per-org token buckets across processes and nodes, without a network round trip per request:
 * each worker spends tokens leased in small chunks from a shared store (Redis, or the cluster
 * primary) and leases more in the background before it runs out. `charge` is a Map look-up and
 * some arithmetic.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, OrgBucket>();
  private readonly preparing = new Map<string, Promise<void>>();
  private leaseQueue: OrgBucket[] = [];
  private flushScheduled = false;
  private readonly sweepTimer: NodeJS.Timeout;
  private lastSweepAt = performance.now();

  constructor(private readonly options: LimiterOptions) {
    this.sweepTimer = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweepTimer.unref();
  }

  /** Org ids whose limits this process is using (for the limit poll). */
  knownOrgs(): Iterable<string> {
    return this.buckets.keys();
  }

  /**
   * Router hook, once the principal is known: rate-limit headers for every authenticated
   * response, from local state and without charging. Only the first request of an org in this
   * process waits (for its limits and a first look at the shared bucket).
   */
  readonly afterAuth = (ctx: RequestContext): void | Promise<void> => {
    const bucket = this.buckets.get(ctx.principal!.orgId);
    if (bucket !== undefined) {
      ctx.extraHeaders = this.headers(bucket, performance.now());
      return;
    }
    return this.prepare(ctx.principal!.orgId).then(() => {
      const prepared = this.buckets.get(ctx.principal!.orgId);
      if (prepared !== undefined) ctx.extraHeaders = this.headers(prepared, performance.now());
    });
  };

  /** Spends `cost` tokens of the org's limit, or throws 429 with Retry-After. Sets the RateLimit-* headers either way. */
  readonly charge = (ctx: RequestContext, cost: number): void => {
    const bucket = this.buckets.get(ctx.principal!.orgId);
    if (bucket === undefined) {
      // Only if the org was forgotten between auth and now: admit, and know it next time.
      void this.prepare(ctx.principal!.orgId).catch(() => {});
      return;
    }
    const now = performance.now();
    bucket.demand += cost;
    bucket.lastUsedAt = now;
    if (bucket.balance >= cost) {
      bucket.balance -= cost;
      if (bucket.balance < bucket.target / 2) this.queueLease(bucket);
      ctx.extraHeaders = this.headers(bucket, now);
      return;
    }
    // Not enough leased tokens here: admit on credit if the shared bucket holds them (the next
    // lease repays). Between two reports from the store, credit never exceeds what it reported
    // plus one lease of refill, so a worker's debt stays bounded whatever the other workers do.
    const borrowed = bucket.balance > 0 ? cost - bucket.balance : cost;
    const available = bucket.storeEstimate(now);
    if (cost <= bucket.burst && borrowed <= available) {
      bucket.balance -= cost;
      bucket.storeTokens -= borrowed;
      this.queueLease(bucket);
      ctx.extraHeaders = this.headers(bucket, now);
      return;
    }
    this.queueLease(bucket);
    ctx.extraHeaders = this.headers(bucket, now);
    throw this.rejection(bucket, cost, borrowed - available, now);
  };

  /** Applies a changed limit (NOTIFY or poll). Tokens leased under a larger limit go back. */
  readonly applyLimit = (orgId: string, limit: OrgLimit): void => {
    const bucket = this.buckets.get(orgId);
    if (bucket === undefined || (bucket.rate === limit.rate && bucket.burst === limit.burst)) return;
    bucket.setLimit(limit);
    if (bucket.storeTokens > limit.burst) bucket.storeTokens = limit.burst;
    if (bucket.balance > bucket.maxLease && !bucket.leasing) this.lease(bucket, -bucket.balance);
  };

  /** Hands leased tokens back so other workers and nodes can use them (on drain). */
  async stop(): Promise<void> {
    clearInterval(this.sweepTimer);
    const returns: Array<Promise<unknown>> = [];
    for (const bucket of this.buckets.values()) {
      if (bucket.balance > 0)
        returns.push(
          this.options.store.lease(bucket.orgId, bucket.rate, bucket.burst, -bucket.balance).catch(() => {}),
        );
    }
    await Promise.all(returns);
  }

  private rejection(bucket: OrgBucket, cost: number, missing: number, now: number): ApiError {
    if (cost > bucket.burst) {
      return new ApiError(
        'rate_limited',
        `This request needs ${cost} tokens but the org's burst is ${bucket.burst}: send smaller batches.`,
        undefined,
        { 'Retry-After': String(Math.max(1, Math.ceil(bucket.burst / bucket.rate))) },
      );
    }
    const seconds = bucket.secondsToRefill(missing, now);
    return new ApiError(
      'rate_limited',
      `Rate limit of ${bucket.rate} events/s (burst ${bucket.burst}) exceeded.`,
      undefined,
      { 'Retry-After': String(seconds) },
    );
  }

  private headers(bucket: OrgBucket, now: number): Array<[string, string]> {
    const shared = bucket.storeEstimate(now);
    let remaining = Math.floor((bucket.balance > 0 ? bucket.balance : 0) + (shared > 0 ? shared : 0));
    if (remaining > bucket.burst) remaining = bucket.burst;
    // Reset: seconds until a full second's worth (RateLimit-Limit) is available again.
    const full = bucket.rate < bucket.burst ? bucket.rate : bucket.burst;
    const reset = remaining >= full ? 0 : Math.ceil((full - remaining) / bucket.rate);
    return [bucket.limitHeader, ['RateLimit-Remaining', String(remaining)], ['RateLimit-Reset', String(reset)]];
  }

  private prepare(orgId: string): Promise<void> {
    let pending = this.preparing.get(orgId);
    if (pending === undefined) {
      pending = (async () => {
        const limit = await this.options.loadLimit(orgId);
        const bucket = new OrgBucket(orgId, limit);
        bucket.lastUsedAt = performance.now();
        try {
          // Asking for nothing returns what the shared bucket holds, so first decisions are informed.
          this.record(bucket, await this.options.store.lease(orgId, limit.rate, limit.burst, 0));
        } catch (error) {
          log.warn(
            { err: (error as Error).message },
            'rate-limit store unreachable; admitting on the configured burst',
          );
          bucket.storeTokens = limit.burst;
          bucket.storeAt = performance.now();
        }
        this.buckets.set(orgId, bucket);
      })().finally(() => this.preparing.delete(orgId));
      this.preparing.set(orgId, pending);
    }
    return pending;
  }

  private queueLease(bucket: OrgBucket): void {
    if (bucket.leasing || bucket.queued) return;
    bucket.queued = true;
    this.leaseQueue.push(bucket);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // Network work never happens inside a request's handler: lease after this turn of the loop.
      setImmediate(this.flushLeases);
    }
  }

  private readonly flushLeases = (): void => {
    this.flushScheduled = false;
    const queue = this.leaseQueue;
    this.leaseQueue = [];
    const now = performance.now();
    for (const bucket of queue) {
      bucket.queued = false;
      if (bucket.leasing || now < bucket.retryAt) continue;
      const want = bucket.target - bucket.balance;
      if (want > 0) this.lease(bucket, want);
    }
  };

  private lease(bucket: OrgBucket, want: number): void {
    bucket.leasing = true;
    this.options.store.lease(bucket.orgId, bucket.rate, bucket.burst, want).then(
      (result) => {
        bucket.leasing = false;
        bucket.balance += result.granted;
        this.record(bucket, result);
        if (want > 0 && result.granted < want) {
          const wait = ((want - result.granted) * 1000) / bucket.rate;
          bucket.retryAt =
            bucket.storeAt + (wait < MIN_RETRY_MS ? MIN_RETRY_MS : wait > MAX_RETRY_MS ? MAX_RETRY_MS : wait);
        } else {
          bucket.retryAt = 0;
        }
        // Admitted on credit while this lease was out: repay now rather than at the next sweep.
        if (bucket.balance < 0 && bucket.retryAt === 0) this.queueLease(bucket);
      },
      () => {
        bucket.leasing = false;
        bucket.retryAt = performance.now() + MAX_RETRY_MS;
      },
    );
  }

  private record(bucket: OrgBucket, result: LeaseResult): void {
    bucket.storeTokens = result.tokens - (bucket.balance < 0 ? -bucket.balance : 0);
    bucket.storeAt = performance.now();
  }

  private sweep(): void {
    const now = performance.now();
    const seconds = (now - this.lastSweepAt) / 1000;
    this.lastSweepAt = now;
    for (const bucket of this.buckets.values()) {
      bucket.demandPerSec = bucket.demandPerSec / 2 + bucket.demand / seconds / 2;
      bucket.demand = 0;
      // Below 1/LEASE_HORIZON_S requests a second nothing is held in advance: credit serves them,
      // and a token kept for a rare request is a token another worker cannot have.
      const target = Math.floor(bucket.demandPerSec * LEASE_HORIZON_S);
      bucket.target = target > bucket.maxLease ? bucket.maxLease : target;
      if (bucket.leasing) continue;
      const idleMs = now - bucket.lastUsedAt;
      if (bucket.balance > 0 && idleMs >= IDLE_RETURN_MS) {
        this.lease(bucket, -bucket.balance);
      } else if (bucket.balance < 0 && now >= bucket.retryAt) {
        this.lease(bucket, bucket.target - bucket.balance);
      } else if (idleMs >= FORGET_IDLE_ORG_MS) {
        if (bucket.balance === 0) this.buckets.delete(bucket.orgId);
      } else if (now - bucket.storeAt >= REFRESH_VIEW_MS && bucket.storeTokens < bucket.burst) {
        this.lease(bucket, bucket.target > bucket.balance ? bucket.target - bucket.balance : 0);
      }
    }
  }
}
