import type { Worker } from 'node:cluster';
import type { LeaseGrantMessage, LeaseRequestMessage } from '../cluster/messages.js';
import { leaseFromBucket, msUntilFull, type BucketState, type LeaseResult } from './bucket-math.js';
import type { TokenStore } from './store.js';

// A full bucket carries no information; forget such buckets now and then so the table stays small.
const FORGET_FULL_EVERY_MS = 10_000;
// The primary answers within microseconds; if it does not answer at all it is gone or wedged.
const LEASE_TIMEOUT_MS = 1_000;

interface PrimaryBucket extends BucketState {
  rate: number;
  burst: number;
}

/**
 * The primary's side of single-node rate limiting: one token bucket per org for all the node's
 * workers, answering lease requests over cluster IPC. Also the fallback while Redis is down.
 */
export class PrimaryLeaseStore {
  private readonly buckets = new Map<string, PrimaryBucket>();
  private readonly sweepTimer: NodeJS.Timeout;

  constructor() {
    this.sweepTimer = setInterval(() => this.forgetFullBuckets(), FORGET_FULL_EVERY_MS);
    this.sweepTimer.unref();
  }

  /** For cluster.on('message'): answers lease requests, ignores everything else. */
  readonly onWorkerMessage = (worker: Worker, message: LeaseRequestMessage | { type?: unknown } | null): void => {
    if (message?.type !== 'ratelimit_lease') return;
    const request = message as LeaseRequestMessage;
    const now = performance.now();
    const state = this.buckets.get(request.orgId);
    const result = leaseFromBucket(state, request.rate, request.burst, request.want, now);
    if (state === undefined) {
      this.buckets.set(request.orgId, { tokens: result.tokens, at: now, rate: request.rate, burst: request.burst });
    } else {
      state.tokens = result.tokens;
      state.at = now;
      state.rate = request.rate;
      state.burst = request.burst;
    }
    const grant: LeaseGrantMessage = { type: 'ratelimit_grant', seq: request.seq, granted: result.granted, tokens: result.tokens };
    if (worker.isConnected()) worker.send(grant);
  };

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

/** A worker's client for the primary's buckets. */
export class IpcLeaseClient implements TokenStore {
  private seq = 0;
  private readonly pending = new Map<number, { resolve(result: LeaseResult): void; reject(error: Error): void; timer: NodeJS.Timeout }>();

  constructor() {
    process.on('message', (message: LeaseGrantMessage | { type?: unknown } | null) => {
      if (message?.type !== 'ratelimit_grant') return;
      const grant = message as LeaseGrantMessage;
      const waiter = this.pending.get(grant.seq);
      if (!waiter) return;
      this.pending.delete(grant.seq);
      clearTimeout(waiter.timer);
      waiter.resolve({ granted: grant.granted, tokens: grant.tokens });
    });
  }

  lease(orgId: string, rate: number, burst: number, want: number): Promise<LeaseResult> {
    if (!process.send || !process.connected) return Promise.reject(new Error('no cluster primary to lease tokens from'));
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(seq);
        reject(new Error('the primary did not answer a rate-limit lease'));
      }, LEASE_TIMEOUT_MS);
      this.pending.set(seq, { resolve, reject, timer });
      const request: LeaseRequestMessage = { type: 'ratelimit_lease', seq, orgId, rate, burst, want };
      process.send!(request);
    });
  }
}
