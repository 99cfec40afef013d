import type { LeaseGrantMessage, LeaseRequestMessage } from '../ratelimit/ipc-store.js';

/** Messages between the primary and its workers over the cluster IPC channel. */
export type WorkerMessage =
  | { type: 'ready'; role: string }
  /** A worker that cannot start says why before it exits; the primary prints it once (issue 29). */
  | { type: 'start_failed'; role: string; message: string }
  | LeaseRequestMessage;

export type PrimaryMessage = { type: 'shutdown' } | LeaseGrantMessage | RolesMessage;

export type WorkerRole = 'http' | 'delivery';

/**
 * Whether every worker role of the node is at its count, for GET /status (checks.workers): the
 * primary tells every worker whenever the answer changes (src/cluster/role-health.ts).
 */
export interface RolesMessage {
  type: 'roles';
  workers: string;
}

/** Environment the primary passes to every worker. */
export const ENV_ROLE = 'TRIGGERS_ROLE';
export const ENV_DATABASE_URL = 'TRIGGERS_DATABASE_URL';
export const ENV_STARTED_AT = 'TRIGGERS_STARTED_AT';
/** '1' when the database is a Citus coordinator (src/db/citus.ts), as the primary found it. */
export const ENV_ON_CITUS = 'TRIGGERS_ON_CITUS';
