import type { LeaseResult } from './bucket-math.js';
import type { RedisLeaseStore } from './redis-store.js';
import type { TokenStore } from './store.js';

/**
 * Redis first; while it is down, the node's own buckets (in the primary), each node allowing its
 * share of the limit (rate and burst divided by NODE_COUNT). Nothing waits for Redis to come back:
 * a failed lease is retried locally at once.
 */
export class FailoverStore implements TokenStore {
  constructor(
    private readonly redis: RedisLeaseStore,
    private readonly local: TokenStore,
    private readonly nodeCount: number,
  ) {}

  lease(orgId: string, rate: number, burst: number, want: number): Promise<LeaseResult> {
    if (!this.redis.up) return this.leaseLocally(orgId, rate, burst, want);
    return this.redis.lease(orgId, rate, burst, want).catch(() => {
      this.redis.noteDown();
      return this.leaseLocally(orgId, rate, burst, want);
    });
  }

  private leaseLocally(orgId: string, rate: number, burst: number, want: number): Promise<LeaseResult> {
    if (this.nodeCount === 1) return this.local.lease(orgId, rate, burst, want);
    return this.local.lease(orgId, rate / this.nodeCount, Math.max(1, Math.floor(burst / this.nodeCount)), want);
  }
}
