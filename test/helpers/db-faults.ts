import type { Sql } from '../../src/db/connect.js';
import { call, type ApiResponse } from './api.js';
import { sleep } from './load.js';

/**
 * Holds `statement` (a LOCK, or a SELECT … FOR UPDATE) in a transaction on `db` until `release()`.
 * Resolves once it is taken; `done` settles when the holding transaction has ended.
 */
export async function holdLock(db: Sql, statement: string): Promise<{ release(): void; done: Promise<unknown> }> {
  let release!: () => void;
  let locked!: () => void;
  const taken = new Promise<void>((resolve) => {
    locked = resolve;
  });
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  const done = db.begin(async (tx) => {
    await tx.unsafe(statement);
    locked();
    await held;
  });
  done.catch(() => locked()); // a failed LOCK must not leave the caller waiting
  await taken;
  return { release, done };
}

/** Waits until a backend of `database` (named `applicationName` when given) waits on a lock; returns its pid. */
export async function lockWaiter(
  db: Sql,
  database: string,
  applicationName?: string,
  timeoutMs = 15_000,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const [waiter] = await db`
      select pid from pg_stat_activity
      where datname = ${database} and wait_event_type = 'Lock' and pid <> pg_backend_pid()
        and (${applicationName ?? null}::text is null or application_name = ${applicationName ?? null})
      limit 1`;
    if (waiter) return waiter.pid as number;
    await sleep(50);
  }
  throw new Error(`no backend of ${database}${applicationName ? ` (${applicationName})` : ''} came to wait on a lock`);
}

/**
 * Waits for a lock waiter as lockWaiter does, then terminates it as a failover or an operator's
 * pg_terminate_backend would. Returns its pid.
 */
export async function terminateLockWaiter(
  db: Sql,
  database: string,
  applicationName?: string,
  timeoutMs = 15_000,
): Promise<number> {
  const pid = await lockWaiter(db, database, applicationName, timeoutMs);
  await db`select pg_terminate_backend(${pid})`;
  return pid;
}

/** Terminates every backend of `database` except the caller's own; returns how many. */
export async function terminateAllBackends(db: Sql, database: string): Promise<number> {
  const rows = await db`
    select pg_terminate_backend(pid) as done from pg_stat_activity
    where datname = ${database} and pid <> pg_backend_pid() and backend_type = 'client backend'`;
  return rows.length;
}

/** One HTTP call that must be answered within `boundMs`: a hang is a failure, as is a reset. */
export async function boundedCall(
  base: string,
  method: string,
  path: string,
  options: Parameters<typeof call>[3] = {},
  boundMs = 15_000,
): Promise<ApiResponse> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${method} ${path} not answered within ${boundMs} ms`)), boundMs);
  });
  try {
    return await Promise.race([call(base, method, path, options), timeout]);
  } finally {
    clearTimeout(timer!);
  }
}

/** The documented answer to a storage fault (API.md §1): 503, code unavailable, Retry-After. */
export function isUnavailable(response: ApiResponse): boolean {
  return (
    response.status === 503 &&
    response.body?.error?.code === 'unavailable' &&
    /^\d+$/.test(response.headers.get('retry-after') ?? '')
  );
}
