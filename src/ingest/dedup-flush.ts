import type { Queryable, Sql } from '../db/connect.js';
import { isoMs } from '../ids.js';
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

export interface DedupFlushResult<T extends FlushRow> {
  /** The rows written to `events`, committed. */
  stored: T[];
  /** One outcome per row of the batch, in its order. */
  outcomes: IngestOutcome[];
}

/**
 * Writes a batch that carries dedup claims: one transaction of one statement that claims the
 * batch's (org_id, dedup_id) keys in event_dedup and inserts the winners and the events without a
 * dedup_id into events, then, only if some claim lost, a look-up of the originals.
 *
 * No COPY here: the `postgres` client's COPY writable never settles when the server rejects the
 * data after CopyDone (porsager/postgres#1173), and inside `sql.begin` that means no ROLLBACK and a
 * connection left "idle in transaction (aborted)" for good (reproduced; docs/RELIABILITY.md).
 * Plain statements fail as errors, so `sql.begin` always rolls back and frees its connection.
 *
 * Exactness: INSERT … ON CONFLICT on event_dedup waits for a concurrent transaction holding the
 * same key and then sees its outcome, so exactly one claim wins across processes and nodes. Claims
 * are taken in (org_id, dedup_id) order so two flushes cannot deadlock. The look-up is a second
 * statement: under READ COMMITTED it takes a new snapshot and sees the winner that committed while
 * the first one waited, which a CTE of the first statement would not.
 *
 * `stillWanted` is asked before COMMIT: a flush the batcher already answered 503 rolls back
 * instead of committing events it said were not stored.
 */
export async function flushWithDedup<T extends FlushRow>(sql: Sql, batch: readonly T[], dedupWindowHours: number, stillWanted: () => boolean): Promise<DedupFlushResult<T>> {
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

  let winners = new Set<string>();
  const originals = new Map<string, IngestOutcome>();
  await sql.begin(async (tx) => {
    winners = await claimAndInsert(tx, written, dedupWindowHours);
    const losers: T[] = [];
    for (const first of firstByKey.values()) if (!winners.has(first.id)) losers.push(first);
    if (losers.length > 0) {
      await lookUpOriginals(tx, losers, originals);
      // A lost claim whose original vanished (retention) is refused whole, before COMMIT.
      for (const loser of losers) {
        if (!originals.has(loser.orgId + '\u0000' + loser.event.dedupId)) throw new Error('dedup claim lost but no original row found');
      }
    }
    if (!stillWanted()) throw new Error('flush abandoned after its timeout; rolled back instead of committed');
  });

  // COMMIT has returned.
  const stored = written.filter((row) => row.event.dedupId === null || winners.has(row.id));
  const outcomes = new Array<IngestOutcome>(batch.length);
  for (let i = 0; i < batch.length; i++) {
    const row = batch[i]!;
    const first = firstOf[i];
    if (!first) outcomes[i] = { status: 'accepted', id: row.id, receivedAt: row.receivedAt };
    else if (winners.has(first.id)) {
      outcomes[i] = first === row
        ? { status: 'accepted', id: row.id, receivedAt: row.receivedAt }
        : { status: 'duplicate', id: first.id, receivedAt: first.receivedAt };
    } else {
      outcomes[i] = originals.get(first.orgId + '\u0000' + first.event.dedupId)!;
    }
  }
  return { stored, outcomes };
}

/**
 * One statement: the rows go over once as arrays; `claims` takes the keys (re-taking one whose
 * original is older than the dedup window), and `events` receives every row without a dedup_id
 * plus the rows whose claim won. Returns the ids of the winning claims.
 */
async function claimAndInsert(tx: Queryable, rows: readonly FlushRow[], dedupWindowHours: number): Promise<Set<string>> {
  const count = rows.length;
  const orgIds = new Array<string>(count);
  const ids = new Array<string>(count);
  const types = new Array<string>(count);
  const payloads = new Array<string>(count);
  const dedupIds = new Array<string | null>(count);
  const occurredAts = new Array<string | null>(count);
  const receivedAts = new Array<string>(count);
  for (let i = 0; i < count; i++) {
    const row = rows[i]!;
    orgIds[i] = row.orgId;
    ids[i] = row.id;
    types[i] = row.event.type;
    payloads[i] = row.event.payloadJson;
    dedupIds[i] = row.event.dedupId;
    occurredAts[i] = row.event.occurredAt;
    receivedAts[i] = row.receivedAt;
  }
  const won = await tx`
    with batch as (
      select * from unnest(${orgIds}::uuid[], ${ids}::uuid[], ${types}::text[], ${payloads}::json[],
                           ${dedupIds}::text[], ${occurredAts}::timestamptz[], ${receivedAts}::timestamptz[])
        as b(org_id, id, type, payload, dedup_id, occurred_at, received_at)
    ), claims as (
      insert into event_dedup (org_id, dedup_id, event_id, received_at)
      select org_id, dedup_id, id, received_at from batch where dedup_id is not null order by org_id, dedup_id
      on conflict (org_id, dedup_id) do update
        set event_id = excluded.event_id, received_at = excluded.received_at
        where event_dedup.received_at < now() - make_interval(hours => ${dedupWindowHours})
      returning event_id
    ), stored as (
      insert into events (org_id, id, type, payload, dedup_id, occurred_at, received_at)
      select org_id, id, type, payload, dedup_id, occurred_at, received_at from batch
      where dedup_id is null or id in (select event_id from claims)
    )
    select event_id from claims`;
  const winners = new Set<string>();
  for (const row of won) winners.add(row.event_id as string);
  return winners;
}

async function lookUpOriginals(tx: Queryable, losers: readonly FlushRow[], originals: Map<string, IngestOutcome>): Promise<void> {
  const rows = await tx`
    select d.org_id, d.dedup_id, d.event_id, d.received_at from event_dedup d
    join unnest(${losers.map((row) => row.orgId)}::uuid[], ${losers.map((row) => row.event.dedupId!)}::text[]) as k(org_id, dedup_id)
      on d.org_id = k.org_id and d.dedup_id = k.dedup_id`;
  for (const row of rows) {
    originals.set(row.org_id + '\u0000' + row.dedup_id, { status: 'duplicate', id: row.event_id, receivedAt: isoMs(row.received_at.getTime()) });
  }
}
