import type { Queryable, Sql } from '../db/connect.js';
import { notFound } from '../errors.js';
import { isEventId, isoMs, uuidv7Time } from '../ids.js';
import { eventJson } from '../ingest/routes.js';
import {
  ackWholeBatch,
  batchesAround,
  changeEvents,
  expandBatches,
  readBatches,
  type ExpandedBatch,
} from './batches.js';
import type { SeekTarget } from './params.js';
import { latestFrontier, lockGroup, type Group } from './store.js';

/**
 * What consumers do with what they received (API.md §4b): ack, nack, extend; and what operators
 * do with a group: list and redrive its dead events, seek. Each runs under the group's row lock
 * (src/groups/store.ts, lockGroup), except an ack of exactly a received page (ackWholeBatch), and
 * changes only batch rows (src/groups/batches.ts) and the frontier, never an event row.
 */

export interface Settled {
  count: number;
  notFound: string[];
}

interface Located {
  group: Group;
  /** The ids of this org's events that the group has handed out (at or below its frontier), by seq. */
  seqOf: Map<string, string>;
  notFound: string[];
  batches: ExpandedBatch[];
}

/**
 * The events named by `ids` and the batches that hold them. An id is not found when it is
 * malformed, another org's, gone, or not yet handed out by this group (above its frontier).
 */
async function locate(tx: Queryable, orgId: string, name: string, ids: string[], locked?: Group): Promise<Located> {
  const group = locked ?? (await lockGroup(tx, orgId, name));
  const lookup = ids.filter(isEventId);
  const rows =
    lookup.length === 0
      ? []
      : await tx`
    select id::text as id, seq::text as seq from events
    where org_id = ${orgId} and id = any(${lookup}::uuid[]) and received_at = any(${lookup.map((id) => isoMs(uuidv7Time(id)))}::timestamptz[])`;
  const frontier = BigInt(group.frontier);
  const seqOf = new Map<string, string>();
  for (const row of rows) if (BigInt(row.seq as string) <= frontier) seqOf.set(row.id as string, row.seq as string);
  const notFound = ids.filter((id) => !seqOf.has(id));
  const batches = await batchesAround(tx, orgId, group.id, [...seqOf.values()].map(BigInt));
  return { group, seqOf, notFound, batches };
}

/**
 * Done for the group: the events leave its batches. An event the group handed out and that is in
 * no batch is done already (acked before): it counts as acked, so a retried ack answers the same.
 *
 * The common case, a consumer acking exactly the page it received, deletes that batch by its
 * digest (src/groups/batches.ts): one statement, no event read, no wait for the group's lock.
 */
export async function ackGroup(sql: Sql, orgId: string, name: string, ids: string[]): Promise<Settled> {
  // The common case without the group's lock (ackWholeBatch says why that is safe), in one
  // statement of its own: one round trip, no transaction around it.
  const whole = await ackWholeBatch(sql, orgId, name, ids);
  if (whole === null) throw notFound('Consumer group');
  if (whole === ids.length) return { count: whole, notFound: [] };
  return sql.begin('isolation level read committed', async (tx) => {
    const located = await locate(tx, orgId, name, ids);
    const { seqOf, batches, group } = located;
    await changeEvents(tx, orgId, group.id, batches, (batch, i) => seqOf.has(batch.ids[i]!), null);
    return { count: seqOf.size, notFound: located.notFound };
  }) as Promise<Settled>;
}

/** Back to the group now, or after `delayS`: waiting, with its delivery count kept. Dead or done events are not found. */
export async function nackGroup(
  sql: Sql,
  orgId: string,
  name: string,
  ids: string[],
  delayS: number,
): Promise<Settled> {
  return sql.begin('isolation level read committed', async (tx) => {
    const located = await locate(tx, orgId, name, ids);
    const { seqOf, batches, group } = located;
    const visibleAt = new Date(group.now.getTime() + delayS * 1000);
    const live = batches.filter((batch) => batch.state !== 'dead');
    const hit = new Set<string>();
    const count = await changeEvents(
      tx,
      orgId,
      group.id,
      live,
      (batch, i) => {
        const yes = seqOf.has(batch.ids[i]!);
        if (yes) hit.add(batch.ids[i]!);
        return yes;
      },
      (batch) => ({ state: 'waiting', deliveryCount: batch.deliveryCount, visibleAt }),
    );
    return { count, notFound: ids.filter((id) => !hit.has(id)) };
  }) as Promise<Settled>;
}

/** Each lease now ends `visibilityTimeoutS` from now. An id not under a lease now is not found. */
export async function extendGroup(
  sql: Sql,
  orgId: string,
  name: string,
  ids: string[],
  visibilityTimeoutS: number,
): Promise<Settled> {
  return sql.begin('isolation level read committed', async (tx) => {
    const located = await locate(tx, orgId, name, ids);
    const { seqOf, batches, group } = located;
    const visibleAt = new Date(group.now.getTime() + visibilityTimeoutS * 1000);
    const leased = batches.filter((batch) => batch.state === 'leased' && batch.visibleAt > group.now);
    const hit = new Set<string>();
    const count = await changeEvents(
      tx,
      orgId,
      group.id,
      leased,
      (batch, i) => {
        const yes = seqOf.has(batch.ids[i]!);
        if (yes) hit.add(batch.ids[i]!);
        return yes;
      },
      (batch) => ({ state: 'leased', deliveryCount: batch.deliveryCount, visibleAt }),
    );
    return { count, notFound: ids.filter((id) => !hit.has(id)) };
  }) as Promise<Settled>;
}

/**
 * Dead events back to the group with delivery_count 0, due at once: those named, or all. A dead
 * batch is also one due again whose count reached max_deliveries and that no receive has marked
 * yet; it is marked here first, so a redrive right after the last lease expired finds it.
 */
export async function redriveGroup(sql: Sql, orgId: string, name: string, ids: string[] | null): Promise<number> {
  return sql.begin('isolation level read committed', async (tx) => {
    const group = await lockGroup(tx, orgId, name);
    await markDead(tx, orgId, group);
    if (ids === null) {
      const [row] = await tx`
        with redriven as (
          update consumer_group_batches set state = 'waiting', delivery_count = 0, visible_at = ${group.now}
          where org_id = ${orgId} and group_id = ${group.id} and state = 'dead'
          returning size as n
        )
        select coalesce(sum(n), 0)::int as n from redriven`;
      return row!.n as number;
    }
    const located = await locate(tx, orgId, name, ids, group);
    const dead = located.batches.filter((batch) => batch.state === 'dead');
    return changeEvents(
      tx,
      orgId,
      group.id,
      dead,
      (batch, i) => located.seqOf.has(batch.ids[i]!),
      () => ({ state: 'waiting', deliveryCount: 0, visibleAt: group.now }),
    );
  }) as Promise<number>;
}

async function markDead(tx: Queryable, orgId: string, group: Group): Promise<void> {
  await tx`update consumer_group_batches set state = 'dead'
           where org_id = ${orgId} and group_id = ${group.id} and state <> 'dead'
             and visible_at <= ${group.now} and delivery_count >= ${group.maxDeliveries}`;
}

export const DEAD_PAGE = 100;

export interface DeadPage {
  dead: { event: string; deliveryCount: number }[];
  /** The last seq listed when more may follow, else null. */
  nextSeq: string | null;
}

/** The group's dead events after seq `after`, in seq order, a page at a time. */
export async function listDead(sql: Sql, orgId: string, name: string, after: string): Promise<DeadPage> {
  return sql.begin('isolation level read committed', async (tx) => {
    const group = await lockGroup(tx, orgId, name);
    await markDead(tx, orgId, group);
    // Batches hold up to 1 000 events each: the first few batches after the cursor hold the page.
    const batches = await expandBatches(
      tx,
      orgId,
      await readBatches(tx, orgId, group.id, tx`and state = 'dead' and last_seq > ${after}::bigint`, DEAD_PAGE + 1),
    );
    const rows: { seq: string; id: string; delivery_count: number }[] = [];
    for (const batch of batches) {
      batch.seqs.forEach((seq, i) => {
        if (BigInt(seq) > BigInt(after)) rows.push({ seq, id: batch.ids[i]!, delivery_count: batch.deliveryCount });
      });
    }
    rows.sort((a, b) => (BigInt(a.seq) < BigInt(b.seq) ? -1 : 1));
    const shown = rows.slice(0, DEAD_PAGE);
    const ids = shown.map((row) => row.id as string);
    const events =
      ids.length === 0
        ? []
        : await tx`
      select id::text as id, type, payload::text as payload, dedup_id, occurred_at, received_at, schema_version, ordering_key from events
      where org_id = ${orgId} and id = any(${ids}::uuid[]) and received_at = any(${ids.map((id) => isoMs(uuidv7Time(id)))}::timestamptz[])`;
    const byId = new Map(events.map((row) => [row.id as string, row]));
    const dead: DeadPage['dead'] = [];
    for (const row of shown) {
      const event = byId.get(row.id as string);
      if (event) dead.push({ event: eventJson(event, false), deliveryCount: row.delivery_count as number });
    }
    return { dead, nextSeq: rows.length > DEAD_PAGE ? (shown.at(-1)!.seq as string) : null };
  }) as Promise<DeadPage>;
}

/**
 * From now on the group hands out events from the point on: every batch goes (acks, leases and
 * dead marks at or after the point are forgotten; before it everything counts as acked) and the
 * frontier is set just before the point.
 *
 * A time is the first event received at or after it, by seq. Events commit a little out of
 * received_at order (a flush numbers its rows when it writes them), so the least seq among events
 * received in the hour after the time is the point: an event received later than that hour has a
 * higher seq (RECEIVED_SLACK_MS, src/delivery/event-reader.ts). With nothing in that hour, the
 * least seq after the time at all; with nothing after the time, as "latest".
 */
export async function seekGroup(sql: Sql, orgId: string, name: string, target: SeekTarget): Promise<Group> {
  return sql.begin('isolation level read committed', async (tx) => {
    const group = await lockGroup(tx, orgId, name);
    let frontier: string;
    let frontierAt: Date | null = null;
    if (target.kind === 'earliest') {
      frontier = '0';
    } else if (target.kind === 'latest') {
      frontier = await latestFrontier(tx);
      frontierAt = group.now;
    } else {
      const from = new Date(target.ms);
      const [inHour] = await tx`
        select min(seq)::text as seq from events
        where org_id = ${orgId} and received_at >= ${from} and received_at < ${new Date(target.ms + 3_600_000)}`;
      let first = inHour!.seq as string | null;
      if (first === null) {
        const [later] =
          await tx`select min(seq)::text as seq from events where org_id = ${orgId} and received_at >= ${from}`;
        first = later!.seq as string | null;
      }
      if (first === null) {
        frontier = await latestFrontier(tx);
        frontierAt = group.now;
      } else {
        frontier = (BigInt(first) - 1n).toString();
        frontierAt = from;
      }
    }
    await tx`delete from consumer_group_batches where org_id = ${orgId} and group_id = ${group.id}`;
    await tx`update consumer_groups set frontier = ${frontier}::bigint, frontier_at = ${frontierAt}
             where org_id = ${orgId} and id = ${group.id} and name = ${name}`;
    return { ...group, frontier, frontierAt };
  }) as Promise<Group>;
}
