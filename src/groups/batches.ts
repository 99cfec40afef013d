import type { Queryable } from '../db/connect.js';

/**
 * The exceptions of a consumer group above nothing but its own frontier: batch rows
 * (sql/009_consumer_groups.sql). A batch is a set of events (seq and id, in seq order) that share
 * a state, a delivery count and a time. Changing part of a batch replaces it by its parts, each
 * a row of its own; changing all of it rewrites one row. Callers hold the group's row lock
 * (src/groups/store.ts), so batches of one group never change under them.
 */

export type BatchState = 'leased' | 'waiting' | 'dead';

export interface Batch {
  firstSeq: string;
  seqs: string[];
  ids: string[];
  state: BatchState;
  deliveryCount: number;
  visibleAt: Date;
}

/** What a part of a batch becomes: its events and their new state, count and time. */
export interface BatchPart {
  seqs: string[];
  ids: string[];
  state: BatchState;
  deliveryCount: number;
  visibleAt: Date;
}

export function rowToBatch(row: Record<string, unknown>): Batch {
  return {
    firstSeq: row.first_seq as string,
    seqs: row.seqs as string[],
    ids: row.ids as string[],
    state: row.state as BatchState,
    deliveryCount: row.delivery_count as number,
    visibleAt: row.visible_at as Date,
  };
}

/** The group's batches that may hold any of `seqs` (by their seq range), locked. */
export async function batchesAround(tx: Queryable, orgId: string, groupId: string, seqs: bigint[]): Promise<Batch[]> {
  if (seqs.length === 0) return [];
  let min = seqs[0]!;
  let max = seqs[0]!;
  for (const seq of seqs) {
    if (seq < min) min = seq;
    if (seq > max) max = seq;
  }
  const rows = await tx`
    select first_seq::text as first_seq, seqs::text[] as seqs, ids::text[] as ids, state, delivery_count, visible_at
    from consumer_group_batches
    where org_id = ${orgId} and group_id = ${groupId} and first_seq <= ${max.toString()}::bigint and last_seq >= ${min.toString()}::bigint
    order by first_seq`;
  return rows.map(rowToBatch);
}

/**
 * Replaces batches by parts: deletes the rows named by `replaced` (first seqs) and writes
 * `parts`. Statements are issued together (one round trip in a transaction).
 */
export async function replaceBatches(tx: Queryable, orgId: string, groupId: string, replaced: string[], parts: BatchPart[]): Promise<void> {
  const pending: Promise<unknown>[] = [];
  if (replaced.length > 0) {
    pending.push(tx`delete from consumer_group_batches where org_id = ${orgId} and group_id = ${groupId} and first_seq = any(${replaced}::bigint[])`);
  }
  for (const part of parts) {
    if (part.seqs.length === 0) continue;
    pending.push(insertBatch(tx, orgId, groupId, part));
  }
  await Promise.all(pending);
}

export function insertBatch(tx: Queryable, orgId: string, groupId: string, part: BatchPart) {
  return tx`
    insert into consumer_group_batches (org_id, group_id, first_seq, last_seq, seqs, ids, state, delivery_count, visible_at)
    values (${orgId}, ${groupId}, ${part.seqs[0]!}::bigint, ${part.seqs.at(-1)!}::bigint, ${part.seqs}::bigint[], ${part.ids}::uuid[],
            ${part.state}, ${part.deliveryCount}, ${part.visibleAt})`;
}

/**
 * Splits each batch into the events `pick` selects (changed by `change`) and the rest (kept as
 * they were), and writes the result. Returns how many events were picked. A batch none of whose
 * events is picked is left alone; one whose every event is picked becomes one row again.
 */
export async function changeEvents(
  tx: Queryable, orgId: string, groupId: string, batches: Batch[],
  pick: (batch: Batch, index: number) => boolean,
  change: ((batch: Batch) => Omit<BatchPart, 'seqs' | 'ids'>) | null,
  /** Events to forget on the way (gone with their partition): neither picked nor kept. */
  drop?: (batch: Batch, index: number) => boolean,
): Promise<number> {
  const replaced: string[] = [];
  const parts: BatchPart[] = [];
  let picked = 0;
  for (const batch of batches) {
    const chosen: BatchPart = { seqs: [], ids: [], state: batch.state, deliveryCount: batch.deliveryCount, visibleAt: batch.visibleAt };
    const rest: BatchPart = { seqs: [], ids: [], state: batch.state, deliveryCount: batch.deliveryCount, visibleAt: batch.visibleAt };
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
    if (chosen.seqs.length === 0 && dropped === 0) continue;
    picked += chosen.seqs.length;
    replaced.push(batch.firstSeq);
    parts.push(rest);
    // `change` null: the picked events leave the group's exceptions (acked).
    if (change) parts.push({ ...chosen, ...change(batch) });
  }
  await replaceBatches(tx, orgId, groupId, replaced, parts);
  return picked;
}
