import { leaseFromBucket, msUntilFull, type BucketState, type LeaseResult } from './bucket-math.js';
import type { TokenStore } from './store.js';

// A full bucket carries no information; forget such buckets now and then so the table stays small.
const FORGET_FULL_EVERY_MS = 10_000;

interface TableBucket extends BucketState {
  rate: number;
  burst: number;
}

/**
 * One token bucket per org in this process's memory: the primary's table that its workers lease
 * from over IPC, or, in a process with no cluster primary (an app driven in-process), the store itself.
 */
export class BucketTable implements TokenStore {
  private readonly buckets = new Map<string, TableBucket>();
  private readonly sweepTimer: NodeJS.Timeout;

  constructor() {
    this.sweepTimer = setInterval(() => this.forgetFullBuckets(), FORGET_FULL_EVERY_MS);
    this.sweepTimer.unref();
  }

  take(orgId: string, rate: number, burst: number, want: number): LeaseResult {
    const now = performance.now();
    const state = this.buckets.get(orgId);
    const result = leaseFromBucket(state, rate, burst, want, now);
    if (state === undefined) {
      this.buckets.set(orgId, { tokens: result.tokens, at: now, rate, burst });
    } else {
      state.tokens = result.tokens;
      state.at = now;
      state.rate = rate;
      state.burst = burst;
    }
    return result;
  }

  lease(orgId: string, rate: number, burst: number, want: number): Promise<LeaseResult> {
    return Promise.resolve(this.take(orgId, rate, burst, want));
  }

  stop(): void {
    clearInterval(this.sweepTimer);
  }

  private forgetFullBuckets(): void {
    const now = performance.now();
    for (const [orgId, bucket] of this.buckets) {
      if (now - bucket.at >= msUntilFull(bucket.tokens, bucket.rate, bucket.burst)) this.buckets.delete(orgId);
    }
  }
}
