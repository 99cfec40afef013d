import type { LeaseResult } from './bucket-math.js';

/**
 * Where a worker leases tokens from: Redis when several nodes share the limit, the cluster
 * primary otherwise. Called off the request path only.
 */
export interface TokenStore {
  lease(orgId: string, rate: number, burst: number, want: number): Promise<LeaseResult>;
}
