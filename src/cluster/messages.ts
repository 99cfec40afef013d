/** Messages between the primary and its workers over the cluster IPC channel. */
export type WorkerMessage =
  | { type: 'ready'; role: string }
  | LeaseRequestMessage;

export type PrimaryMessage = { type: 'shutdown' } | LeaseGrantMessage;

/** Rate limits without Redis (or while it is down): a worker leases tokens from the primary's buckets. */
export interface LeaseRequestMessage { type: 'ratelimit_lease'; seq: number; orgId: string; rate: number; burst: number; want: number }
export interface LeaseGrantMessage { type: 'ratelimit_grant'; seq: number; granted: number; tokens: number }

export type WorkerRole = 'http' | 'delivery';

/** Environment the primary passes to every worker. */
export const ENV_ROLE = 'TRIGGERS_ROLE';
export const ENV_DATABASE_URL = 'TRIGGERS_DATABASE_URL';
export const ENV_STARTED_AT = 'TRIGGERS_STARTED_AT';
