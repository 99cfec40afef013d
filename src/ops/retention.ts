import type { Sql } from '../db/connect.js';
import { ensurePartitions } from '../db/migrate.js';
import { smallestUuidv7At } from '../ids.js';
import { log } from '../log.js';

const DAY_MS = 86_400_000;
// Any fixed number shared by every node: only one node runs retention at a time.
export const RETENTION_LOCK = 7_310_422_002;
// Rows per DELETE: big enough to be quick in bulk, small enough to hold locks only briefly.
const DEDUP_CHUNK = 5000;
const PARTITION_RE = /^events_(\d{4})(\d{2})(\d{2})$/;

export interface RetentionOptions {
  retentionDays: number;
  dedupWindowHours: number;
}

export interface RetentionReport {
  /** False when another node held the lock, so this run did nothing. */
  ran: boolean;
  partitionsCreated: number;
  partitionsDropped: string[];
  dedupRowsDeleted: number;
}

/**
 * The retention job, run by the primary at boot and then on an interval:
 * 1. creates the daily event partitions ahead (ensurePartitions);
 * 2. drops every partition whose whole day is older than retentionDays, in bulk: DETACH
 *    PARTITION … CONCURRENTLY (takes no lock that blocks ingestion or the inbox; cannot run
 *    in a transaction block, hence a plain reserved connection), then DROP TABLE of the
 *    detached table, which nobody reads any more;
 * 3. deletes event_dedup rows older than the dedup window, in chunks;
 * A session advisory lock makes concurrent runs on several nodes take turns (the loser skips).
 */
export async function runRetention(sql: Sql, options: RetentionOptions, now = Date.now()): Promise<RetentionReport> {
  const report: RetentionReport = { ran: false, partitionsCreated: 0, partitionsDropped: [], dedupRowsDeleted: 0 };
  const conn = await sql.reserve();
  try {
    const [lock] = await conn`select pg_try_advisory_lock(${RETENTION_LOCK}) as locked`;
    if (!lock!.locked) return report;
    try {
      report.ran = true;
      report.partitionsCreated = await ensurePartitions(sql, 7, now);
      report.partitionsDropped = await dropExpiredPartitions(conn, options.retentionDays, now);
      report.dedupRowsDeleted = await deleteExpiredDedupIds(conn, options.dedupWindowHours);
    } finally {
      await conn`select pg_advisory_unlock(${RETENTION_LOCK})`;
    }
  } finally {
    conn.release();
  }
  return report;
}

/**
 * The first UTC day (YYYYMMDD) whose partition is kept. A day's partition ends at the next
 * midnight and expires once that end is retentionDays old, so the day holding now - retentionDays
 * is the oldest kept: events live at least retentionDays, at most one day more.
 */
export function firstKeptDay(retentionDays: number, now: number): string {
  return new Date(now - retentionDays * DAY_MS).toISOString().slice(0, 10).replace(/-/g, '');
}

async function dropExpiredPartitions(conn: Sql, retentionDays: number, now: number): Promise<string[]> {
  const keepFrom = firstKeptDay(retentionDays, now);
  const partitions = await conn`
    select c.relname as name, i.inhdetachpending as pending
    from pg_inherits i join pg_class c on c.oid = i.inhrelid
    where i.inhparent = 'events'::regclass`;
  const dropped: string[] = [];
  for (const { name, pending } of partitions as unknown as Array<{ name: string; pending: boolean }>) {
    const match = PARTITION_RE.exec(name);
    if (!match || match[1]! + match[2]! + match[3]! >= keepFrom) continue;
    // A detach interrupted earlier (crash, cancel) is left pending and must be finalized.
    if (pending) await conn`alter table events detach partition ${conn(name)} finalize`;
    else await conn`alter table events detach partition ${conn(name)} concurrently`;
    await conn`drop table ${conn(name)}`;
    dropped.push(name);
  }
  return dropped;
}

async function deleteExpiredDedupIds(conn: Sql, dedupWindowHours: number): Promise<number> {
  let total = 0;
  for (;;) {
    // The outer condition is re-checked on rows a concurrent ingest just re-claimed (it moves
    // received_at forward), so a live claim is never deleted.
    const deleted = await conn`
      delete from event_dedup d
      using (
        select org_id, dedup_id from event_dedup
        where received_at < now() - make_interval(hours => ${dedupWindowHours})
        limit ${DEDUP_CHUNK}
      ) as expired
      where d.org_id = expired.org_id and d.dedup_id = expired.dedup_id
        and d.received_at < now() - make_interval(hours => ${dedupWindowHours})`;
    total += deleted.count;
    if (deleted.count < DEDUP_CHUNK) return total;
  }
}

/**
 * Runs the job now and every `intervalMs` (never two runs at once in this process). Returns a
 * stop function for shutdown.
 */
export function scheduleRetention(sql: Sql, options: RetentionOptions, intervalMs: number): () => void {
  let running = false;
  const runOnce = () => {
    if (running) return;
    running = true;
    runRetention(sql, options)
      .then((report) => {
        if (report.partitionsDropped.length > 0 || report.dedupRowsDeleted > 0 || report.partitionsCreated > 0) {
          log.info(report, 'retention: partitions and dedup ids maintained');
        }
      })
      .catch((error) => log.error({ err: error }, 'retention job failed; will retry on the next run'))
      .finally(() => {
        running = false;
      });
  };
  runOnce();
  const timer = setInterval(runOnce, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

// Delivery rows per DELETE (removeExpiredDeliveries).
const DELIVERY_CHUNK = 10_000;

/**
 * Deletes webhook deliveries older than the event retention: they point at events that no longer
 * exist. Delivery ids are UUIDv7 of the event's time, so the primary key finds them per endpoint
 * without another index. Run by each delivery process on its cleanup beat (idempotent).
 */
export async function removeExpiredDeliveries(sql: Sql, retentionDays: number, now = Date.now()): Promise<void> {
  const oldestKept = smallestUuidv7At(now - retentionDays * DAY_MS);
  const endpoints = await sql`select org_id, id from webhook_endpoints`;
  for (const endpoint of endpoints) {
    for (;;) {
      const result = await sql`
        delete from webhook_deliveries where (org_id, endpoint_id, id) in (
          select org_id, endpoint_id, id from webhook_deliveries
          where org_id = ${endpoint.org_id} and endpoint_id = ${endpoint.id}
            and id < ${oldestKept}::uuid
          limit ${DELIVERY_CHUNK})`;
      if (result.count < DELIVERY_CHUNK) break;
    }
  }
}

// endpoint_stats keeps a day and an hour: the widest stats window (24 h) stays whole.
export const STATS_RETENTION_MS = 25 * 3_600_000;

/**
 * Deletes endpoint_stats rows older than STATS_RETENTION_MS, deleted endpoints' rows included.
 * Run by each delivery process on its cleanup beat (idempotent): the table holds at most a row per
 * endpoint per minute, so one statement a beat reads a bounded table.
 */
export async function removeExpiredStats(sql: Sql, now = Date.now()): Promise<void> {
  await sql`delete from endpoint_stats where minute < ${new Date(now - STATS_RETENTION_MS)}`;
}
