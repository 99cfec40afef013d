import { createHash } from 'node:crypto';
import type { Queryable } from '../db/connect.js';
import { RECEIVED_SLACK_MS } from '../delivery/event-reader.js';
import { uuidv7Time } from '../ids.js';

/**
 * The exceptions of a consumer group: batch rows (sql/009_consumer_groups.sql). A batch is a set
 * of events that share a state, a delivery count and a time, stored either as arrays (seqs and
 * ids in seq order) or, for a page of every event in a seq range, as that range alone.
 *
 * Changing part of a batch replaces it by its parts, each a row of its own (as arrays); changing
 * all of it updates the row in place, in whatever form it has. Callers hold the group's row lock
 * (src/groups/store.ts), so batches of one group never change under them.
 */

export type BatchState = 'leased' | 'waiting' | 'dead';

export interface Batch {
  firstSeq: string;
  lastSeq: string;
  /** null until expandBatches: a range batch read from its row. */
  seqs: string[] | null;
  ids: string[] | null;
  size: number;
  minId: string;
  state: BatchState;
  deliveryCount: number;
  visibleAt: Date;
}

/** A batch whose events are known (arrays read, or its range expanded). */
export interface ExpandedBatch extends Batch {
  seqs: string[];
  ids: string[];
}

/** What a part of a batch becomes: its events and their new state, count and time. */
export interface BatchPart {
  seqs: string[];
  ids: string[];
  state: BatchState;
  deliveryCount: number;
  visibleAt: Date;
}

export type PartChange = Pick<BatchPart, 'state' | 'deliveryCount' | 'visibleAt'>;

export function rowToBatch(row: Record<string, unknown>): Batch {
  return {
    firstSeq: row.first_seq as string,
    lastSeq: row.last_seq as string,
    seqs: row.seqs as string[] | null,
    ids: row.ids as string[] | null,
    size: row.size as number,
    minId: row.min_id as string,
    state: row.state as BatchState,
    deliveryCount: row.delivery_count as number,
    visibleAt: row.visible_at as Date,
  };
}

/**
 * sha256 of the ids sorted and joined by commas: the same set gives the same digest, in any order.
 * Postgres computes the same for a range batch (insertRangeBatchFrom), with its built-in sha256.
 * Batches written before 2026-12-05 carry sha1 digests: an ack of one finds no batch by digest
 * and takes the general path (src/groups/settle.ts), with the same result.
 */
export function idsDigest(ids: readonly string[]): Buffer {
  return createHash('sha256')
    .update([...ids].sort().join(','))
    .digest();
}

function minOf(ids: readonly string[]): string {
  let min = ids[0]!;
  for (const id of ids) if (id < min) min = id;
  return min;
}

/**
 * Reads the batch rows of a group that `where` selects (a fragment of the same client), in
 * `order` (a fragment too: seq order unless given). `groupId` may be a fragment (a subquery by
 * name), so the read can be sent before the group's row is.
 */
export async function readBatches(
  tx: Queryable,
  orgId: string,
  groupId: string | ReturnType<Queryable>,
  where: ReturnType<Queryable>,
  limit = 1_000_000,
  order?: ReturnType<Queryable>,
  /** Lock the rows read: every read that goes on to change batches does (see ackWholeBatch). */
  lock = false,
): Promise<Batch[]> {
  const rows = await tx`
    select first_seq::text as first_seq, last_seq::text as last_seq, seqs::text[] as seqs, ids::text[] as ids, size, min_id::text as min_id,
           state, delivery_count, visible_at
    from consumer_group_batches
    where org_id = ${orgId} and group_id = ${groupId} ${where}
    ${order ?? tx`order by first_seq`}
    limit ${limit}
    ${lock ? tx`for update` : tx``}`;
  return rows.map(rowToBatch);
}

/** The group's batches that may hold any of `seqs` (by their seq range), expanded. */
export async function batchesAround(
  tx: Queryable,
  orgId: string,
  groupId: string,
  seqs: bigint[],
): Promise<ExpandedBatch[]> {
  if (seqs.length === 0) return [];
  let min = seqs[0]!;
  let max = seqs[0]!;
  for (const seq of seqs) {
    if (seq < min) min = seq;
    if (seq > max) max = seq;
  }
  const batches = await readBatches(
    tx,
    orgId,
    groupId,
    tx`and first_seq <= ${max.toString()}::bigint and last_seq >= ${min.toString()}::bigint`,
    undefined,
    undefined,
    true,
  );
  return expandBatches(tx, orgId, batches);
}

/**
 * Fills in the events of range batches: every event of the org in the range, acknowledged in the
 * inbox or not (one range scan per partial index), from about the oldest id's time on.
 */
export async function expandBatches(tx: Queryable, orgId: string, batches: Batch[]): Promise<ExpandedBatch[]> {
  await Promise.all(
    batches.map(async (batch) => {
      if (batch.seqs !== null) return;
      const floor = new Date(uuidv7Time(batch.minId) - RECEIVED_SLACK_MS);
      const rows = await tx`
      select seq::text as seq, id::text as id from (
        (select seq, id from events where org_id = ${orgId} and acked_at is null
           and seq >= ${batch.firstSeq}::bigint and seq <= ${batch.lastSeq}::bigint and received_at >= ${floor})
        union all
        (select seq, id from events where org_id = ${orgId} and acked_at is not null
           and seq >= ${batch.firstSeq}::bigint and seq <= ${batch.lastSeq}::bigint and received_at >= ${floor})
      ) range order by range.seq`;
      batch.seqs = rows.map((row) => row.seq as string);
      batch.ids = rows.map((row) => row.id as string);
    }),
  );
  return batches as ExpandedBatch[];
}

/** A new batch as arrays; `range` true writes it as its seq range only (every org event in it). */
export function insertBatch(tx: Queryable, orgId: string, groupId: string, part: BatchPart, range = false) {
  return tx`
    insert into consumer_group_batches (org_id, group_id, first_seq, last_seq, seqs, ids, size, min_id, digest, state, delivery_count, visible_at)
    values (${orgId}, ${groupId}, ${part.seqs[0]!}::bigint, ${part.seqs.at(-1)!}::bigint,
            ${range ? null : part.seqs}::bigint[], ${range ? null : part.ids}::uuid[], ${part.seqs.length}, ${minOf(part.ids)},
            ${idsDigest(part.ids)}, ${part.state}, ${part.deliveryCount}, ${part.visibleAt})`;
}

/**
 * A new batch of every org event in the rows of `source` (a relation of the statement with
 * columns seq and id: a CTE), written by Postgres without the events or their ids coming to
 * JavaScript; nothing when `source` is empty. Its digest is idsDigest's, computed there.
 */
export function insertRangeBatchFrom(
  tx: Queryable,
  orgId: string,
  groupId: string,
  source: string,
  change: PartChange,
) {
  return tx`
    insert into consumer_group_batches (org_id, group_id, first_seq, last_seq, seqs, ids, size, min_id, digest, state, delivery_count, visible_at)
    select ${orgId}, ${groupId}, min(seq), max(seq), null, null, count(*), min(id::text collate "C")::uuid,
           sha256(convert_to(string_agg(id::text, ',' order by id::text collate "C"), 'UTF8')),
           ${change.state}, ${change.deliveryCount}, ${change.visibleAt}
    from ${tx(source)}
    having count(*) > 0`;
}

/**
 * Splits each batch into the events `pick` selects (changed by `change`, or removed when `change`
 * is null: acked) and the rest (kept as they were), and writes the result. Returns how many events
 * were picked. A batch none of whose events is picked or dropped is left alone; one whose every
 * event is picked is updated in place (or deleted), in its own form.
 */
export async function changeEvents(
  tx: Queryable,
  orgId: string,
  groupId: string,
  batches: ExpandedBatch[],
  pick: (batch: ExpandedBatch, index: number) => boolean,
  change: ((batch: ExpandedBatch) => PartChange) | null,
  /** Events to forget on the way (gone with their partition): neither picked nor kept. */
  drop?: (batch: ExpandedBatch, index: number) => boolean,
): Promise<number> {
  const deleted: string[] = [];
  const writes: Promise<unknown>[] = [];
  let picked = 0;
  for (const batch of batches) {
    const chosen: BatchPart = {
      seqs: [],
      ids: [],
      state: batch.state,
      deliveryCount: batch.deliveryCount,
      visibleAt: batch.visibleAt,
    };
    const rest: BatchPart = { ...chosen, seqs: [], ids: [] };
    let dropped = 0;
    for (let i = 0; i < batch.seqs.length; i++) {
      if (drop?.(batch, i)) {
        dropped++;
        continue;
      }
      const into = pick(batch, i) ? chosen : rest;
      into.seqs.push(batch.seqs[i]!);
      into.ids.push(batch.ids[i]!);
    }
    // Fewer events than the row says: some are gone (retention) since it was written.
    const shrunk = dropped > 0 || batch.seqs.length !== batch.size;
    if (chosen.seqs.length === 0 && !shrunk) continue;
    picked += chosen.seqs.length;
    if (rest.seqs.length === 0 && !shrunk) {
      // All of it: one row changes (or goes), whatever its form.
      if (change === null) {
        deleted.push(batch.firstSeq);
      } else {
        const to = change(batch);
        writes.push(tx`update consumer_group_batches set state = ${to.state}, delivery_count = ${to.deliveryCount}, visible_at = ${to.visibleAt}
                       where org_id = ${orgId} and group_id = ${groupId} and first_seq = ${batch.firstSeq}::bigint`);
      }
      continue;
    }
    deleted.push(batch.firstSeq);
    if (rest.seqs.length > 0) writes.push(insertBatch(tx, orgId, groupId, rest));
    if (change !== null && chosen.seqs.length > 0)
      writes.push(insertBatch(tx, orgId, groupId, { ...chosen, ...change(batch) }));
  }
  // The deletes go first (a part may start at its batch's first seq, the key); statements of a
  // transaction run in the order they are issued, so all go in one round trip.
  if (deleted.length > 0) {
    writes.unshift(
      tx`delete from consumer_group_batches where org_id = ${orgId} and group_id = ${groupId} and first_seq = any(${deleted}::bigint[])`,
    );
  }
  await Promise.all(writes);
  return picked;
}

/**
 * An ack of exactly one batch's events (a consumer acking the page it received): deletes it by
 * its digest without reading an event. Returns how many events it held, 0 when no batch has
 * exactly these ids, or null when the org has no group of that name.
 *
 * It runs without the group's lock, so that consumers' acks do not queue behind receives. That
 * is safe because every other change of a batch reads it `for update` first (readBatches with
 * `lock`) or is one UPDATE or DELETE: a change that read the batch first makes this delete wait
 * and then find the batch as that change left it (the same events: deleted now; split into
 * parts: not found, and the ack takes the general path under the lock); a change that comes
 * after finds the batch gone.
 */
export async function ackWholeBatch(
  sql: Queryable,
  orgId: string,
  name: string,
  ids: readonly string[],
): Promise<number | null> {
  const [row] = await sql`
    with named as (select id from consumer_groups where org_id = ${orgId} and name = ${name}),
    deleted as (
      delete from consumer_group_batches
      where org_id = ${orgId} and group_id = (select id from named) and digest = ${idsDigest(ids)} and size = ${ids.length}
      returning size
    )
    select (select id from named) as group_id, (select size from deleted) as size`;
  if (row!.group_id === null) return null;
  return row!.size === null ? 0 : (row!.size as number);
}
