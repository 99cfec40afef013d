import type { Queryable } from '../db/connect.js';

/**
 * The order of events (sql/008_flush_fences.sql explains it in full).
 *
 * Every event draws `seq` from one sequence, event_order, as its row is written. A flush first
 * draws one number itself and takes a transaction-level advisory lock keyed by it: its fence,
 * below every seq its rows will draw, held until its transaction has committed (on Citus, until
 * the workers have committed too) or died. Readers compute a watermark from the fences held and
 * the sequence's position, and hand out only rows below it: every row below it that will ever
 * commit has committed.
 *
 * The fence costs a flush one small statement in the same write and the same transaction as its
 * rows: no commit of its own and no row to write or remove (docs/PERFORMANCE.md, "Citus and the
 * order of events").
 */

/**
 * The advisory-lock key space of fences: key = FENCE_BASE + seq ('TR' in the top 16 bits, room
 * for 2^48 events). Another
 * application's bigint advisory locks in this range, in the same database, would read as fences
 * and hold readers back while held (never skip an event).
 */
const FENCE_BASE = 0x5452n << 48n;
/** The fence's key as pg_locks shows it: classid holds the key's upper 32 bits, objid the lower. */
const FENCE_CLASSID_FIRST = 0x5452 * 0x10000;
const FENCE_CLASSID_END = FENCE_CLASSID_FIRST + 0x10000;

/**
 * Takes the flush's fence. It must run in the flush's transaction before any of its rows draws a
 * seq (the firehose sends it with its COPY, both prepared, in one write; the dedup statement
 * runs it as a CTE that every inserted row is joined to).
 */
export const FLUSH_FENCE = `select pg_advisory_xact_lock_shared(${FENCE_BASE} + nextval('event_order'))`;

/**
 * The watermark, for one read of events: a number such that every event below it that will ever
 * commit is visible to any snapshot taken after this statement has returned. So the read must be
 * a later statement (a new snapshot in READ COMMITTED), never the same one: a flush that commits
 * between a statement's snapshot and its look at pg_locks would be invisible and unfenced.
 *
 * Order matters and is forced: the sequence's next number is read first, then (a correlated
 * subquery, evaluated after its outer row) the fences held. A flush not fenced at that look either
 * committed before it (visible to the later snapshot) or draws its numbers after it, at or above
 * the next number read first. A fence is released only after its transaction's commit is visible
 * (on Citus, after COMMIT PREPARED on the workers: Citus runs it in the commit callback, before
 * Postgres releases locks).
 *
 * Global, not per org: a reader of one org waits for every flush in flight, each a few ms.
 */
export async function readWatermark(sql: Queryable): Promise<string> {
  const [row] = await sql`
    select least(s.next, (
        select min(((l.classid::bigint - ${FENCE_CLASSID_FIRST}::bigint) << 32) + l.objid::bigint)
        from pg_locks l
        where l.locktype = 'advisory' and l.objsubid = 1 and l.database = s.db
          and l.classid::bigint >= ${FENCE_CLASSID_FIRST}::bigint and l.classid::bigint < ${FENCE_CLASSID_END}::bigint
      ))::text as watermark
    from (
      select case when is_called then last_value + 1 else last_value end as next,
             (select oid from pg_database where datname = current_database()) as db
      from event_order
    ) s`;
  return row!.watermark as string;
}
