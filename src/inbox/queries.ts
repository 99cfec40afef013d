import type { Queryable, Sql } from '../db/connect.js';
import { readWatermark } from '../ingest/sequence.js';
import { timedInboxQuery } from './channels.js';
import type { InboxOrder, InboxPosition } from './cursor.js';

/** Which event types a page holds: all, one exact type, or every type starting with a prefix. */
export type TypeFilter = { kind: 'all' } | { kind: 'exact'; type: string } | { kind: 'prefix'; prefix: string };

/**
 * The most payload bytes one inbox page carries (the payloads' text, as spliced into the body).
 * A page stops before the event that would cross it, so it may hold fewer events than `limit`
 * (always at least one: a payload is at most 256 KiB) and says `has_more`; its cursor continues
 * at that event. Without it a page of 1 000 events of 256 KiB was ~256 MB in one HTTP worker's
 * memory, twice over while the JSON was built.
 */
export const INBOX_PAGE_MAX_BYTES = 8 * 1024 * 1024;

export interface InboxRow {
  id: string;
  /** seq as text; named apart from `seq` so ORDER BY seq sorts the column, not this text. */
  cursor_seq: string;
  type: string;
  /**
   * The stored json as text, spliced into the response as is. Null only for the last row, when
   * it is the first one past the page's byte budget: it is not shown, it only says there is more.
   */
  payload: string | null;
  dedup_id: string | null;
  occurred_at: Date | null;
  received_at: Date;
  schema_version: number | null;
  ordering_key: string | null;
}

export interface InboxPageQuery {
  orgId: string;
  order: InboxOrder;
  /** Rows strictly after this position in `order`. */
  from: InboxPosition;
  /** Rows to fetch (the route asks for one more than it shows, to know has_more). */
  limit: number;
  filter: TypeFilter;
  /** INBOX_PAGE_MAX_BYTES unless given. */
  maxPayloadBytes?: number;
}

/**
 * One page of the org's unacknowledged events in seq order.
 *
 * The watermark is what makes a cursor safe (src/ingest/sequence.ts): only rows below the lowest
 * seq a flush in flight may still write are handed out, read by the next statement (a later
 * snapshot). Every event below it that will ever commit is then visible, so no row can commit
 * behind a position this query has returned; rows above it show up on a later poll (a flush
 * takes milliseconds). Acks only remove rows, never move positions, so they cannot make a
 * cursor skip either.
 *
 * Served by events_unacked (org_id, seq) WHERE acked_at IS NULL on every partition: a Merge
 * Append of index range scans that stops after `limit` rows. An exact type uses
 * events_unacked_by_type (org_id, type, seq) the same way.
 *
 * Plan caching, measured on 5M events in 38 partitions: planning this query costs 2-6 ms (more
 * than running it), and Postgres keeps re-planning the unfiltered shape because its custom plan
 * looks cheaper. The plan does not depend on the values (there is nothing to prune), so the
 * unfiltered and exact-type shapes force the generic plan: planned once per connection. A
 * prefix is the opposite: its best plan depends on how common the prefix is (scan in order and
 * filter for `user.*`; range on the type index and sort for a rare one), and the generic plan
 * picked the sort, 40 ms for a common prefix, so prefixes are planned with their values.
 * On Citus every shape is planned with its values: the coordinator could not route a generic plan
 * of this query's earlier form (the watermark was a subquery) to its shard ("could not create
 * distributed plan"), and the setting stayed.
 */
export async function readInboxPage(
  sql: Sql,
  query: InboxPageQuery,
  planning: InboxPlanning = { genericPlans: true },
): Promise<InboxRow[]> {
  const mode = query.filter.kind === 'prefix' || !planning.genericPlans ? 'force_custom_plan' : 'force_generic_plan';
  // READ COMMITTED whatever the database's default: the page query needs a snapshot of its own,
  // taken after the watermark was read.
  return timedInboxQuery(
    'inbox_read',
    () =>
      sql.begin('isolation level read committed', async (tx) => {
        // Pipelined: one round trip for both; the page query must wait for the watermark.
        const [, watermark] = await Promise.all([
          tx`select set_config('plan_cache_mode', ${mode}, true)`,
          readWatermark(tx),
        ]);
        return inboxPageQuery(tx, query, watermark);
      }) as Promise<InboxRow[]>,
  );
}

export interface InboxPlanning {
  /** Unfiltered and exact-type pages use a generic plan (false on Citus, see readInboxPage). */
  genericPlans: boolean;
}

/**
 * The page query itself, not yet run (readInboxPage runs it; the benchmark EXPLAINs it).
 *
 * The byte budget is applied in Postgres, so payloads past it never reach this process: a running
 * sum of the payloads' sizes over the page in order, and rows are returned while the bytes before
 * them are within the budget: every row that fits, then the first that does not, without its
 * payload (it only tells has_more). The inner page is the query as it was before the budget (the
 * same index range scans, stopped by the same LIMIT), with the payload not yet cast to text.
 *
 * Sizes: the json column has no exact size that is cheap for every row. An uncompressed payload
 * (every payload under ~2 KB, and large ones that do not compress) is measured by pg_column_size,
 * which reads only its header: the text plus 0-4 bytes of header, so the budget errs on the safe
 * side. A compressed payload stores less than it shows, so it is cast and measured exactly
 * (decompressed: ~0.8 ms for 256 KiB here) and, if it fits, cast again for the output. Measured on
 * 500 000 events, old and new query interleaved on a loaded machine: a page of 100 small events
 * +3-8% from Node (+0.05 ms of execution), of 1 000 +16% (+0.6 ms); prefix pages, whose plan sorts,
 * got ~20% faster, as only the rows kept are cast to text now (the old query cast every candidate
 * below the sort). A stored-size pre-cut in a second window cost +0.15/+1.2 ms of execution.
 */
export function inboxPageQuery(sql: Queryable, query: InboxPageQuery, watermark: string) {
  const { orgId, from, limit, filter } = query;
  const budget = query.maxPayloadBytes ?? INBOX_PAGE_MAX_BYTES;
  const typeCondition =
    filter.kind === 'exact'
      ? sql`and type collate "C" = ${filter.type}`
      : filter.kind === 'prefix'
        ? sql`and type collate "C" >= ${filter.prefix} and type collate "C" < ${prefixEnd(filter.prefix)}`
        : sql``;
  const asc = query.order === 'asc';
  const page = asc
    ? sql`
        select id, seq, seq::text as cursor_seq, type, payload, dedup_id, occurred_at, received_at, schema_version, ordering_key
        from events
        where org_id = ${orgId} and acked_at is null and seq > ${from.seq}::bigint
          and seq < ${watermark}::bigint
          ${typeCondition}
        order by seq
        limit ${limit}`
    : sql`
        select id, seq, seq::text as cursor_seq, type, payload, dedup_id, occurred_at, received_at, schema_version, ordering_key
        from events
        where org_id = ${orgId} and acked_at is null and seq < ${from.seq}::bigint
          and seq < ${watermark}::bigint
          ${typeCondition}
        order by seq desc
        limit ${limit}`;
  const inOrder = asc ? sql`order by seq` : sql`order by seq desc`;
  return sql<InboxRow[]>`
    select id, cursor_seq, type, case when n = 1 or bytes_through <= ${budget} then payload::text end as payload, dedup_id, occurred_at, received_at, schema_version, ordering_key
    from (
      select measured.*, row_number() over running as n, sum(bytes) over running as bytes_through
      from (
        select page.*, case when pg_column_compression(page.payload) is null then pg_column_size(page.payload)
          else octet_length(page.payload::text) end as bytes
        from (${page}) page
      ) measured
      window running as (${inOrder} rows unbounded preceding)
    ) sized
    where n <= 2 or bytes_through - bytes <= ${budget}
    ${inOrder}`;
}

/**
 * Acknowledges a set of the org's events in one statement and returns the ids that exist for this
 * org. `receivedAt` holds each id's UUIDv7 timestamp (RFC 3339), which is its received_at, so the
 * statement touches only the partitions involved. Rows acked before keep their first acked_at and
 * are not written again; they still count as found, so a retried ack answers the same.
 *
 * The rows are found by primary key first (`found`), and the UPDATE names them by key with no
 * `acked_at is null` of its own. With that condition in the UPDATE, Postgres could match it to the
 * partial index of unacked events (org_id, type, seq) and, on a partition not yet analysed (a
 * backlog ingested minutes ago), estimate the org's unacked rows at 2 and scan all of them for
 * each ack: 36 000-50 000 index entries per page of 1 000 in a 50 000-event backlog, so draining
 * it cost O(backlog) per page (measured: docs/PERFORMANCE.md "The inbox's ack"). A concurrent ack
 * of the same row between the two steps is re-checked by the UPDATE, and least() keeps the first
 * time (least ignores a null; Citus refuses now() inside coalesce or CASE of an UPDATE).
 */
export async function ackEvents(
  sql: Queryable,
  orgId: string,
  ids: string[],
  receivedAt: string[],
): Promise<Set<string>> {
  const rows = await timedInboxQuery('ack', () => ackStatement(sql, orgId, ids, receivedAt));
  return new Set(rows.map((row) => row.id as string));
}

/** The statement of ackEvents, unsent until awaited (a test EXPLAINs it). */
export function ackStatement(sql: Queryable, orgId: string, ids: string[], receivedAt: string[]) {
  return sql`
    with found as materialized (
      select id, acked_at from events
      where org_id = ${orgId} and id = any(${ids}::uuid[]) and received_at = any(${receivedAt}::timestamptz[])
    ), newly as (
      update events set acked_at = least(acked_at, now())
      where org_id = ${orgId} and id = any(array(select id from found where acked_at is null))
        and received_at = any(${receivedAt}::timestamptz[])
      returning id
    )
    select id from found`;
}

/**
 * The smallest string above every string that starts with `prefix`, in byte order: the last
 * character plus one. Types are ASCII ([A-Za-z0-9._:-]), so the range [prefix, prefixEnd) under
 * COLLATE "C" is exactly "starts with prefix" and is one index range.
 */
export function prefixEnd(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}
