import type { RolesMessage, WorkerRole } from './messages.js';

/**
 * Whether every worker role of the node is at its count, for GET /status (checks.workers). The
 * primary knows; it tells every worker whenever the answer changes (a worker died, a replacement
 * became ready), so the /status handler reads a value instead of asking over IPC per request.
 */

export interface RoleCount {
  role: WorkerRole;
  ready: number;
  wanted: number;
}

/** 'ok', or each role below its count as "<role> <ready>/<wanted>", e.g. "http 1/2, delivery 0/1". */
export function describeRoles(counts: RoleCount[]): string {
  const below = counts.filter((count) => count.ready < count.wanted);
  return below.length === 0 ? 'ok' : below.map((count) => `${count.role} ${count.ready}/${count.wanted}`).join(', ');
}

let latest = 'ok';
let listening = false;

/**
 * A worker's view of the primary's last word, for the /status handler; undefined in a process
 * without a primary (the app driven in-process by tests), where there are no roles to report.
 */
export function watchRoleHealth(): (() => string) | undefined {
  if (!process.send) return undefined;
  if (!listening) {
    listening = true;
    process.on('message', (message: RolesMessage | { type?: unknown } | null) => {
      if (message?.type === 'roles') latest = (message as RolesMessage).workers;
    });
  }
  return () => latest;
}
