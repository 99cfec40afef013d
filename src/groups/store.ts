import type { Queryable, Sql } from '../db/connect.js';
import { eventTypeMatcher, type EventTypeMatcher } from '../delivery/event-types.js';
import { ApiError, notFound } from '../errors.js';
import { isoMs, uuidv7 } from '../ids.js';
import { readWatermark } from '../ingest/sequence.js';
import type { GroupSettings, NewGroup } from './params.js';

/** A consumer group's row (sql/009_consumer_groups.sql), as the operations use it. */
export interface Group {
  id: string;
  name: string;
  start: string;
  eventTypes: string[];
  filter: Record<string, unknown> | null;
  visibilityTimeoutS: number;
  maxDeliveries: number;
  /** seq as decimal text. */
  frontier: string;
  frontierAt: Date | null;
  createdAt: Date;
  /** The transaction's now() (Postgres' clock, the one leases are measured by). */
  now: Date;
}

/** Groups one org may have: each costs a row, its batches and a count on every list. */
export const MAX_GROUPS_PER_ORG = 100;

// Without now(): Citus refuses non-immutable functions in RETURNING.
const RETURNED =
  'id, name, start, event_types, filter, visibility_timeout_s, max_deliveries, frontier::text as frontier, frontier_at, created_at';

function rowToGroup(row: Record<string, unknown>): Group {
  return {
    id: row.id as string,
    name: row.name as string,
    start: row.start as string,
    eventTypes: row.event_types as string[],
    filter: row.filter as Record<string, unknown> | null,
    visibilityTimeoutS: row.visibility_timeout_s as number,
    maxDeliveries: row.max_deliveries as number,
    frontier: row.frontier as string,
    frontierAt: row.frontier_at as Date | null,
    createdAt: row.created_at as Date,
    now: row.now as Date,
  };
}

/**
 * The group's row, locked until the transaction ends: every operation that changes a group's
 * position or batches takes it first, so those of one group run one at a time (a receive and an
 * ack of the same batch must not cross: the ack could miss a row the receive just wrote).
 */
export async function lockGroup(tx: Queryable, orgId: string, name: string): Promise<Group> {
  const [row] = await tx`
    select id, name, start, event_types, filter, visibility_timeout_s, max_deliveries, frontier::text as frontier, frontier_at, created_at, now() as now
    from consumer_groups where org_id = ${orgId} and name = ${name}
    for update`;
  if (!row) throw notFound('Consumer group');
  return rowToGroup(row);
}

async function readGroups(sql: Queryable, orgId: string, name: string | null): Promise<Group[]> {
  const rows = await sql`
    select id, name, start, event_types, filter, visibility_timeout_s, max_deliveries, frontier::text as frontier, frontier_at, created_at, now() as now
    from consumer_groups where org_id = ${orgId} ${name === null ? sql`` : sql`and name = ${name}`}
    order by name`;
  return rows.map(rowToGroup);
}

/**
 * The position a new group (or a seek) starts from: every event at or below it counts as seen.
 * "latest" is just below the watermark (src/ingest/sequence.ts): every event below it is
 * committed and visible now, and one that commits later is above it, so it is handed out.
 */
export async function latestFrontier(tx: Queryable): Promise<string> {
  return (BigInt(await readWatermark(tx)) - 1n).toString();
}

export async function createGroup(sql: Sql, orgId: string, group: NewGroup): Promise<Group> {
  return sql.begin('isolation level read committed', async (tx) => {
    // Serialises creates of one org, so the cap holds under concurrent creates (on Citus too: the
    // lock is taken on the coordinator, where every create is planned).
    await tx`select pg_advisory_xact_lock(hashtextextended(${'consumer_groups:' + orgId}, 0))`;
    const [count] = await tx`select count(*)::int as n from consumer_groups where org_id = ${orgId}`;
    if ((count!.n as number) >= MAX_GROUPS_PER_ORG) {
      throw new ApiError(
        'conflict',
        `This org already has ${count!.n} consumer groups, the most allowed (${MAX_GROUPS_PER_ORG}); delete one before creating another.`,
      );
    }
    const frontier = group.start === 'earliest' ? '0' : await latestFrontier(tx);
    const [row] = await tx`
      insert into consumer_groups (org_id, name, id, start, event_types, filter, visibility_timeout_s, max_deliveries, frontier, frontier_at)
      values (${orgId}, ${group.name}, ${uuidv7(Date.now())}, ${group.start}, ${group.event_types}::text[], ${group.filter === null ? null : tx.json(group.filter as never)},
              ${group.visibility_timeout_s}, ${group.max_deliveries}, ${frontier}::bigint, ${group.start === 'earliest' ? null : tx`now()`})
      on conflict (org_id, name) do nothing
      returning ${tx.unsafe(RETURNED)}`;
    if (!row) throw new ApiError('conflict', `A consumer group named ${group.name} already exists.`);
    return rowToGroup({ ...row, now: new Date() });
  });
}

export async function listGroups(sql: Sql, orgId: string): Promise<Group[]> {
  return readGroups(sql, orgId, null);
}

export async function getGroup(sql: Sql, orgId: string, name: string): Promise<Group> {
  const [group] = await readGroups(sql, orgId, name);
  if (!group) throw notFound('Consumer group');
  return group;
}

export async function patchGroup(sql: Sql, orgId: string, name: string, patch: Partial<GroupSettings>): Promise<Group> {
  return sql.begin('isolation level read committed', async (tx) => {
    const group = await lockGroup(tx, orgId, name);
    const filter = patch.filter === undefined ? group.filter : patch.filter;
    const [row] = await tx`
      update consumer_groups set
        event_types = ${patch.event_types ?? group.eventTypes}::text[],
        filter = ${filter === null ? null : tx.json(filter as never)},
        visibility_timeout_s = ${patch.visibility_timeout_s ?? group.visibilityTimeoutS},
        max_deliveries = ${patch.max_deliveries ?? group.maxDeliveries}
      where org_id = ${orgId} and id = ${group.id} and name = ${name}
      returning ${tx.unsafe(RETURNED)}`;
    return rowToGroup({ ...row!, now: group.now });
  });
}

export async function deleteGroup(sql: Sql, orgId: string, name: string): Promise<void> {
  await sql.begin('isolation level read committed', async (tx) => {
    const group = await lockGroup(tx, orgId, name);
    await tx`delete from consumer_group_batches where org_id = ${orgId} and group_id = ${group.id}`;
    await tx`delete from consumer_groups where org_id = ${orgId} and name = ${name} and id = ${group.id}`;
  });
}

/**
 * Events above the frontier counted at most (per partial index): a group far behind shows
 * `pending` of at least this, and GET stays well inside the statement timeout (a count reads
 * each event's index entry: ~1 s per few million here).
 */
export const MAX_COUNTED_AHEAD = 1_000_000;

/** The counts a group is shown with (API.md §4b). */
export interface GroupCounts {
  pending: number;
  leased: number;
  dead: number;
  oldestPendingAt: Date | null;
}

/**
 * Pending: the events in batches that are not dead (leased ones included), plus the events above
 * the frontier that match the group's event_types (the payload `filter` is applied when events
 * are handed out, not here: with a filter, pending may count events the filter will leave out).
 * A batch due again whose delivery count has reached max_deliveries counts as dead already: the
 * next receive marks it so.
 *
 * The count above the frontier reads every such event's index entry, up to MAX_COUNTED_AHEAD.
 */
export async function groupCounts(sql: Queryable, orgId: string, group: Group): Promise<GroupCounts> {
  const exact = group.eventTypes.filter((type) => !type.endsWith('*'));
  const prefixes = group.eventTypes.filter((type) => type.endsWith('*')).map((type) => type.slice(0, -1));
  const everyType = group.eventTypes.length === 0 || prefixes.includes('');
  const typeCondition = everyType
    ? sql``
    : sql`and (type = any(${exact}::text[]) or exists (select 1 from unnest(${prefixes}::text[]) p where starts_with(type, p)))`;
  const floor = group.frontierAt === null ? new Date(0) : new Date(group.frontierAt.getTime() - 3_600_000);
  const [batchCounts, ahead] = await Promise.all([
    sql`
      select
        coalesce(sum(size) filter (where not dead), 0)::int as pending,
        coalesce(sum(size) filter (where not dead and state = 'leased' and visible_at > now()), 0)::int as leased,
        coalesce(sum(size) filter (where dead), 0)::int as dead,
        min(min_id::text) filter (where not dead) as oldest_id
      from (
        select size, min_id, state, visible_at, state = 'dead' or (visible_at <= now() and delivery_count >= ${group.maxDeliveries}) as dead
        from consumer_group_batches where org_id = ${orgId} and group_id = ${group.id}
      ) b`,
    sql`
      select count(*)::int as n, min(received_at) as oldest from (
        (select received_at from events where org_id = ${orgId} and acked_at is null and seq > ${group.frontier}::bigint and received_at >= ${floor} ${typeCondition}
         limit ${MAX_COUNTED_AHEAD})
        union all
        (select received_at from events where org_id = ${orgId} and acked_at is not null and seq > ${group.frontier}::bigint and received_at >= ${floor} ${typeCondition}
         limit ${MAX_COUNTED_AHEAD})
      ) above`,
  ]);
  const counts = batchCounts[0]!;
  const oldestInBatches = counts.oldest_id
    ? new Date(parseInt((counts.oldest_id as string).slice(0, 8) + (counts.oldest_id as string).slice(9, 13), 16))
    : null;
  const oldestAhead = ahead[0]!.oldest as Date | null;
  let oldest = oldestInBatches;
  if (oldestAhead && (oldest === null || oldestAhead < oldest)) oldest = oldestAhead;
  return {
    pending: (counts.pending as number) + (ahead[0]!.n as number),
    leased: counts.leased as number,
    dead: counts.dead as number,
    oldestPendingAt: oldest,
  };
}

/** The documented JSON of a group with its counts. */
export function groupJson(group: Group, counts: GroupCounts): string {
  return JSON.stringify({
    name: group.name,
    start: group.start,
    event_types: group.eventTypes,
    filter: group.filter,
    visibility_timeout_s: group.visibilityTimeoutS,
    max_deliveries: group.maxDeliveries,
    created_at: isoMs(group.createdAt.getTime()),
    pending: counts.pending,
    leased: counts.leased,
    dead: counts.dead,
    oldest_pending_at: counts.oldestPendingAt ? isoMs(counts.oldestPendingAt.getTime()) : null,
  });
}

const MAX_CACHED = 1_000;
const typeMatchers = new Map<string, EventTypeMatcher>();

export function typeMatcher(group: Group): EventTypeMatcher {
  const key = group.eventTypes.join('\n');
  let matcher = typeMatchers.get(key);
  if (!matcher) {
    if (typeMatchers.size >= MAX_CACHED) typeMatchers.clear();
    matcher = eventTypeMatcher(group.eventTypes);
    typeMatchers.set(key, matcher);
  }
  return matcher;
}
