import type { Queryable, Sql } from '../db/connect.js';
import { checkSendDeadline, NO_DEADLINE, SendDeadlineExceeded } from '../db/send-deadline.js';
import { ApiError, unavailable } from '../errors.js';
import { isoMs } from '../ids.js';
import { log } from '../log.js';
import { FLUSH_FENCE } from './sequence.js';
import type { ValidEvent } from './validate.js';

export interface IngestOutcome {
  status: 'accepted' | 'duplicate';
  id: string;
  receivedAt: string;
}

/** What a flush knows of one queued event. */
export interface FlushRow {
  readonly orgId: string;
  readonly id: string;
  readonly receivedAt: string;
  readonly event: ValidEvent;
}

/** A queued event that a flush answers: once, with its outcome or a refusal. */
export interface PendingFlushRow extends FlushRow {
  resolve(outcome: IngestOutcome): void;
  reject(error: ApiError): void;
}

/**
 * Writes a batch that carries dedup claims in one autocommit statement: it claims the batch's
 * (org_id, dedup_id) keys in event_dedup and inserts into events the rows whose claim won and the
 * rows without a dedup_id. Resolves after the commit; fails as a whole (nothing stored, no claim
 * left) when the statement fails. At the commit, every stored event and every in-batch repeat of
 * one is answered and `onCommitted` hears the stored rows; then, only if a claim lost, the
 * originals are read and those duplicates answered. So a slow or failed read (or the batcher's
 * timeout during it) can refuse only events that were not stored.
 *
 * Why neither COPY nor a transaction on the `postgres` client (issue 14, docs/RELIABILITY.md):
 * - its COPY writable never settles when the server rejects the data after CopyDone
 *   (porsager/postgres#1173): inside `sql.begin` no ROLLBACK is sent and the connection stays
 *   "idle in transaction (aborted)" for good;
 * - when the connection is lost inside `sql.begin` (backend terminated, Postgres restarted), its
 *   ROLLBACK is written to a socket already gone and throws from a setImmediate: an uncaught
 *   TypeError that ends the process.
 * One statement needs neither, and bounds the flush with statement_timeout alone, as the
 * firehose's autocommit COPY does: the server cancels and rolls back before the batcher gives up.
 *
 * Exactness: INSERT … ON CONFLICT waits for a concurrent transaction holding the same key and then
 * sees its outcome, so exactly one claim wins across processes and nodes. Claims are taken in
 * (org_id, dedup_id) order so two flushes cannot deadlock. The originals are read by a later
 * statement, with a snapshot that includes the winner that committed while this one waited (a CTE
 * of the same statement would not see it).
 */
export async function flushWithDedup<T extends PendingFlushRow>(
  sql: Sql,
  batch: readonly T[],
  dedupWindowHours: number,
  onCommitted: (stored: T[]) => void,
  sendBy = NO_DEADLINE,
): Promise<void> {
  const written: T[] = [];
  const firstByKey = new Map<string, T>();
  const firstOf = new Array<T | null>(batch.length);
  for (let i = 0; i < batch.length; i++) {
    const row = batch[i]!;
    const dedupId = row.event.dedupId;
    if (dedupId === null) {
      written.push(row);
      firstOf[i] = null;
      continue;
    }
    const key = row.orgId + '\u0000' + dedupId;
    const first = firstByKey.get(key);
    if (first) firstOf[i] = first;
    else {
      firstByKey.set(key, row);
      written.push(row);
      firstOf[i] = row;
    }
  }

  const winners = await claimAndInsert(sql, written, dedupWindowHours, sendBy);
  // Committed: answer what is known now, before anything else can fail or time out.
  const losers: T[] = [];
  for (const first of firstByKey.values()) if (!winners.has(first.id)) losers.push(first);
  for (let i = 0; i < batch.length; i++) {
    const row = batch[i]!;
    const first = firstOf[i];
    if (first === null || (first === row && winners.has(row.id)))
      row.resolve({ status: 'accepted', id: row.id, receivedAt: row.receivedAt });
    else if (winners.has(first.id)) row.resolve({ status: 'duplicate', id: first.id, receivedAt: first.receivedAt });
    // else a lost claim (or a repeat of one): answered once its original is read.
  }
  onCommitted(written.filter((row) => row.event.dedupId === null || winners.has(row.id)));
  if (losers.length === 0) return;

  const originals = await readOriginals(sql, losers);
  let refusal: ApiError | null = null;
  for (let i = 0; i < batch.length; i++) {
    const first = firstOf[i];
    if (!first || winners.has(first.id)) continue;
    // No original: the read failed, or the claim expired and was removed since. Either way this
    // event was not stored, and its retry will be answered truthfully.
    const original = originals.get(first.orgId + '\u0000' + first.event.dedupId);
    if (original) batch[i]!.resolve(original);
    else batch[i]!.reject((refusal ??= unavailable('Storage is unavailable; the event was not stored.', 1, 'storage')));
  }
}

/**
 * `claims` takes the keys (re-taking one whose original is older than the dedup window, by this
 * process's clock: Citus allows only constants and immutable functions in an ON CONFLICT's
 * WHERE, so not now()); `stored` inserts every row without a dedup_id and every row whose claim
 * won, each drawing its seq after the flush's fence (sequence.ts) is taken: every row it inserts
 * is joined to `fence`'s one row, so no row exists before the lock is held, and the lock ends
 * with the statement's transaction. Returns the ids of the winning claims.
 *
 * The short fields go as arrays; the payloads as one JSON array, spliced as serialised at
 * validation and paired with the rows by position. As a text[] array, the client escapes every
 * quote of every payload; as one JSON record set (json_to_recordset) Postgres spends more per row.
 * Measured in docs/PERFORMANCE.md, "Dedup flush".
 *
 * It is sent before `sendBy` or never (send-deadline.ts): a statement queued in the pool behind
 * slow reads would otherwise be sent whenever a connection frees, after the batcher has answered
 * 503 for its events, and commit them. So at `sendBy` a query still in the client's queue is
 * cancelled, which drops it from the queue (cancelIfUnsent); one already written is bounded by
 * statement_timeout. A connection reserved per flush would do the same, but reserve() and
 * release() cost 20-40 µs of client CPU per flush here, a timer about 1 µs.
 */
async function claimAndInsert(
  sql: Sql,
  rows: readonly FlushRow[],
  dedupWindowHours: number,
  sendBy: number,
): Promise<Set<string>> {
  const count = rows.length;
  const orgIds = new Array<string>(count);
  const ids = new Array<string>(count);
  const types = new Array<string>(count);
  const dedupIds = new Array<string | null>(count);
  const occurredAts = new Array<string | null>(count);
  const receivedAts = new Array<string>(count);
  const schemaVersions = new Array<number | null>(count);
  const orderingKeys = new Array<string | null>(count);
  let payloads = '[';
  for (let i = 0; i < count; i++) {
    const row = rows[i]!;
    orgIds[i] = row.orgId;
    ids[i] = row.id;
    types[i] = row.event.type;
    dedupIds[i] = row.event.dedupId;
    occurredAts[i] = row.event.occurredAt;
    receivedAts[i] = row.receivedAt;
    schemaVersions[i] = row.event.schemaVersion;
    orderingKeys[i] = row.event.orderingKey;
    payloads += (i === 0 ? '' : ',') + row.event.payloadJson;
  }
  payloads += ']';
  checkSendDeadline(sendBy, 'the dedup flush');
  const query = insertClaimed(
    sql,
    orgIds,
    ids,
    types,
    dedupIds,
    occurredAts,
    receivedAts,
    schemaVersions,
    orderingKeys,
    payloads,
    dedupWindowHours,
  );
  let unsent = false;
  const deadline =
    sendBy === NO_DEADLINE
      ? null
      : setTimeout(
          () => {
            unsent = cancelIfUnsent(query);
          },
          Math.max(0, sendBy - performance.now()),
        );
  let won;
  try {
    won = await query;
  } catch (error) {
    throw unsent ? new SendDeadlineExceeded('no connection was free for the dedup flush') : error;
  } finally {
    if (deadline) clearTimeout(deadline);
  }
  const winners = new Set<string>();
  for (const row of won) winners.add(row.event_id as string);
  return winners;
}

/**
 * Cancels `query` if the client has not handed it to a connection yet (postgres 3.4.9 sets
 * `state` then; null before): it leaves the queue and fails with 57014, never sent. A query
 * already sent is left alone: cancelling it would open a connection for a CancelRequest, whose
 * failure (Postgres down) the client leaves as an unhandled rejection, which ends the process.
 * Should a client version rename `state`, nothing is cancelled: the flush waits as it used to.
 */
function cancelIfUnsent(query: { cancel(): unknown }): boolean {
  if ((query as { state?: unknown }).state !== null) return false;
  query.cancel();
  return true;
}

function insertClaimed(
  sql: Queryable,
  orgIds: string[],
  ids: string[],
  types: string[],
  dedupIds: Array<string | null>,
  occurredAts: Array<string | null>,
  receivedAts: string[],
  schemaVersions: Array<number | null>,
  orderingKeys: Array<string | null>,
  payloads: string,
  dedupWindowHours: number,
) {
  // `::text::json`: a parameter typed json would be JSON.stringify'd again by the client.
  return sql`
    with batch as (
      select * from unnest(${orgIds}::uuid[], ${ids}::uuid[], ${types}::text[], ${dedupIds}::text[],
                           ${occurredAts}::timestamptz[], ${receivedAts}::timestamptz[], ${schemaVersions}::int[], ${orderingKeys}::text[])
          with ordinality as b(org_id, id, type, dedup_id, occurred_at, received_at, schema_version, ordering_key, n)
        join json_array_elements(${payloads}::text::json) with ordinality as p(payload, n) using (n)
    ), claims as (
      insert into event_dedup (org_id, dedup_id, event_id, received_at)
      select org_id, dedup_id, id, received_at from batch where dedup_id is not null order by org_id, dedup_id
      on conflict (org_id, dedup_id) do update
        set event_id = excluded.event_id, received_at = excluded.received_at
        where event_dedup.received_at < ${new Date(Date.now() - dedupWindowHours * 3_600_000)}::timestamptz
      returning event_id
    ), kept as (
      select * from batch where dedup_id is null or id in (select event_id from claims)
    ), fence as materialized (${sql.unsafe(FLUSH_FENCE)}
    ), stored as (
      insert into events (org_id, id, type, payload, dedup_id, occurred_at, received_at, schema_version, ordering_key)
      select org_id, id, type, payload, dedup_id, occurred_at, received_at, schema_version, ordering_key from kept cross join fence order by n
    )
    select event_id from claims`;
}

/** The original of each lost claim, by org and dedup_id; empty if the read fails. */
async function readOriginals(sql: Sql, losers: readonly FlushRow[]): Promise<Map<string, IngestOutcome>> {
  const originals = new Map<string, IngestOutcome>();
  try {
    const rows = await sql`
      select d.org_id, d.dedup_id, d.event_id, d.received_at from event_dedup d
      join unnest(${losers.map((row) => row.orgId)}::uuid[], ${losers.map((row) => row.event.dedupId!)}::text[]) as k(org_id, dedup_id)
        on d.org_id = k.org_id and d.dedup_id = k.dedup_id`;
    for (const row of rows) {
      originals.set(row.org_id + '\u0000' + row.dedup_id, {
        status: 'duplicate',
        id: row.event_id,
        receivedAt: isoMs(row.received_at.getTime()),
      });
    }
  } catch (error) {
    log.error(
      { err: (error as Error).message, duplicates: losers.length },
      'reading the originals of duplicates failed; answering 503 for those',
    );
  }
  return originals;
}
