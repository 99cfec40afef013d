import type { Worker } from 'node:cluster';
import type { LeaseResult } from './bucket-math.js';
import { BucketTable } from './bucket-table.js';
import { sendToPrimary, sendToWorker } from '../ipc.js';
import type { TokenStore } from './store.js';

/** Rate limits without Redis (or while it is down): a worker leases tokens from the primary's buckets. */
export interface LeaseRequestMessage {
  type: 'ratelimit_lease';
  seq: number;
  orgId: string;
  rate: number;
  burst: number;
  want: number;
}
export interface LeaseGrantMessage {
  type: 'ratelimit_grant';
  seq: number;
  granted: number;
  tokens: number;
}

// The primary answers within microseconds; if it does not answer at all it is gone or wedged.
const LEASE_TIMEOUT_MS = 1_000;

/**
 * The primary's side of single-node rate limiting: one token bucket per org for all the node's
 * workers, answering lease requests over cluster IPC. Also the fallback while Redis is down.
 */
export class PrimaryLeaseStore {
  private readonly table = new BucketTable();

  /** For cluster.on('message'): answers lease requests, ignores everything else. */
  readonly onWorkerMessage = (worker: Worker, message: LeaseRequestMessage | { type?: unknown } | null): void => {
    if (message?.type !== 'ratelimit_lease') return;
    const request = message as LeaseRequestMessage;
    const result = this.table.take(request.orgId, request.rate, request.burst, request.want);
    const grant: LeaseGrantMessage = {
      type: 'ratelimit_grant',
      seq: request.seq,
      granted: result.granted,
      tokens: result.tokens,
    };
    // The worker may have died since it asked: a failed send must not take the primary down.
    sendToWorker(worker, grant);
  };

  stop(): void {
    this.table.stop();
  }
}

/** A worker's client for the primary's buckets. */
export class IpcLeaseClient implements TokenStore {
  private seq = 0;
  private readonly pending = new Map<
    number,
    { resolve(result: LeaseResult): void; reject(error: Error): void; timer: NodeJS.Timeout }
  >();

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
    if (!process.send || !process.connected)
      return Promise.reject(new Error('no cluster primary to lease tokens from'));
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      const fail = (error: Error) => {
        const waiter = this.pending.get(seq);
        if (!waiter) return;
        this.pending.delete(seq);
        clearTimeout(waiter.timer);
        reject(error);
      };
      const timer = setTimeout(
        () => fail(new Error('the primary did not answer a rate-limit lease')),
        LEASE_TIMEOUT_MS,
      );
      this.pending.set(seq, { resolve, reject, timer });
      const request: LeaseRequestMessage = { type: 'ratelimit_lease', seq, orgId, rate, burst, want };
      // The channel can close between the check above and the write (the primary gone while we drain).
      sendToPrimary(request, (error) =>
        fail(new Error(`cannot ask the primary for a rate-limit lease: ${error.message}`)),
      );
    });
  }
}
