/**
 * What the primary hands every worker at fork besides the IPC channel: the role and the
 * environment (and ENV_ON_CITUS, which src/config.ts reads). The messages themselves are the
 * protocol in src/ipc.ts.
 */
export type WorkerRole = 'http' | 'delivery';

/** Environment the primary passes to every worker. */
export const ENV_ROLE = 'TRIGGERS_ROLE';
export const ENV_DATABASE_URL = 'TRIGGERS_DATABASE_URL';
export const ENV_STARTED_AT = 'TRIGGERS_STARTED_AT';
