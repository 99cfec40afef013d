import type { Sql } from '../db/connect.js';
import { rowMatches, type CompiledFilter, type FilterableRow } from '../filter/filter.js';
import { isoMs, uuidv7Time } from '../ids.js';
import { readWatermark } from '../ingest/sequence.js';

/** A position in an org's events in commit order: its seq (and the event's id, for its time), as the inbox orders them. */
export interface StreamPosition {
  /** bigint as decimal text. */
  seq: string;
  id: string;
}

export interface StreamEvent {
  id: string;
  seq: string;
  type: string;
  receivedAtMs: number;
  /** The event's ordering_key (API.md §3); null or absent when it has none. */
  orderingKey?: string | null;
  /** The webhook request body, built once per read ('' for an event the endpoint's filter leaves out). */
  body: string;
  /** Left out by the endpoint's filter: the stream moves past it and creates no delivery. */
  excluded?: true;
}

export interface ReadResult {
  events: StreamEvent[];
  /** The read stopped at its row or byte limit: more events may follow at once. */
  more: boolean;
}

export interface EventsRead extends ReadResult {
  /** The watermark the read stopped below (bigint as decimal text): it saw every event under it. */
  watermark: string;
}

// A flush numbers its rows when it writes them, a little after they were received: a row after
// the cursor in seq order was received at most this long before the cursor's event (batching,
// waiting for a connection, clock skew between nodes, generously). It bounds
// received_at from below so a read touches the newest partitions, not all of them.
export const RECEIVED_SLACK_MS = 3_600_000;

/**
 * The next events of one org after `after`, in seq order, acknowledged or not. Only rows below
 * the watermark (the lowest seq a flush in flight may still write, src/ingest/sequence.ts), read
 * just before, are returned: a row that commits later can never land behind a position already
 * read.
 *
 * At most `limit` rows, and rows only while the payloads before them add up to less than
 * `maxBytes` (so always the first): the delivery process's memory is bounded in bytes, and 500
 * payloads of 256 KiB would be 125 MiB in one read. The sum is taken in Postgres over
 * octet_length(payload::text), which reads the stored size without detoasting, so the rows
 * left out are never fetched.
 */
export async function readEventsAfter(
  sql: Sql,
  orgId: string,
  after: StreamPosition,
  deliverFromMs: number,
  limit: number,
  maxBytes: number,
  /** The endpoint's filter: events it leaves out come back `excluded`, without a body. */
  filter: CompiledFilter | null = null,
): Promise<EventsRead> {
  // Event ids are UUIDv7 of received_at; a cursor at the start (zero UUID) or on an event
  // imported with another kind of id gives no time.
  const cursorMs = after.id[14] === '7' ? uuidv7Time(after.id) : 0;
  const floorMs = Math.max(deliverFromMs, cursorMs - RECEIVED_SLACK_MS);
  // One range on each partial index: events_unacked (acked_at is null) and
  // events_acked_by_org_seq (acked_at is not null). One statement, one snapshot: each row is in
  // exactly one of them. Both are limited, merged in order, and limited again.
  const floor = new Date(floorMs);
  const watermark = await readWatermark(sql);
  // Then the payload bytes up to each row (upto_bytes) decide where the read stops.
  const rows = await sql`
    select id, cursor_seq, type, payload, dedup_id, occurred_at, received_at, schema_version, ordering_key, upto_bytes from (
      select limited.*, sum(octet_length(payload)) over (order by seq rows unbounded preceding) as upto_bytes from (
        select * from (
          (select id, seq, seq::text as cursor_seq, type, payload::text as payload, dedup_id, occurred_at, received_at, schema_version, ordering_key
           from events
           where org_id = ${orgId} and acked_at is null and seq > ${after.seq}::bigint and received_at >= ${floor}
             and seq < ${watermark}::bigint
           order by seq
           limit ${limit})
          union all
          (select id, seq, seq::text as cursor_seq, type, payload::text as payload, dedup_id, occurred_at, received_at, schema_version, ordering_key
           from events
           where org_id = ${orgId} and acked_at is not null and seq > ${after.seq}::bigint and received_at >= ${floor}
             and seq < ${watermark}::bigint
           order by seq
           limit ${limit})
        ) both_kinds
        order by seq
        limit ${limit}
      ) limited
    ) sized
    where upto_bytes - octet_length(payload) < ${maxBytes}
    order by seq`;
  const events: StreamEvent[] = [];
  for (const row of rows) {
    const receivedAtMs = (row.received_at as Date).getTime();
    const orderingKey = row.ordering_key as string | null;
    if (filter !== null && !rowMatches(filter, row as unknown as FilterableRow, receivedAtMs)) {
      events.push({
        id: row.id as string,
        seq: row.cursor_seq as string,
        type: row.type as string,
        receivedAtMs,
        orderingKey,
        body: '',
        excluded: true,
      });
      continue;
    }
    events.push({
      id: row.id as string,
      seq: row.cursor_seq as string,
      type: row.type as string,
      receivedAtMs,
      orderingKey,
      body: webhookBody(
        row.id as string,
        row.type as string,
        row.payload as string,
        row.occurred_at as Date | null,
        receivedAtMs,
        row.schema_version as number | null,
      ),
    });
  }
  const last = rows.at(-1);
  return {
    events,
    more: rows.length === limit || (last !== undefined && Number(last.upto_bytes) >= maxBytes),
    watermark,
  };
}

export interface EventsById {
  bodies: Map<string, string>;
  /** Each found event's type (a broker destination's default routing key, a stream field). */
  types: Map<string, string>;
  /** Events that exist but did not fit in `maxBytes`: not read now. */
  deferred: Set<string>;
}

/**
 * Events by org and id, for retries of materialised deliveries, oldest first while their payloads
 * add up to less than `maxBytes` (at least one); the rest are named in `deferred`. An id in
 * neither is gone (retention dropped it).
 */
export async function readEventsById(
  sql: Sql,
  ids: readonly { orgId: string; eventId: string; receivedAt: Date }[],
  maxBytes: number,
): Promise<EventsById> {
  const found: EventsById = { bodies: new Map(), types: new Map(), deferred: new Set() };
  if (ids.length === 0) return found;
  const rows = await sql`
    select id, type, case when upto_bytes - octet_length(payload::text) < ${maxBytes} then payload::text end as payload, occurred_at, received_at, schema_version from (
      select id, type, payload, occurred_at, received_at, schema_version,
        sum(octet_length(payload::text)) over (order by received_at, id rows unbounded preceding) as upto_bytes
      from events
      where org_id = any(${[...new Set(ids.map((entry) => entry.orgId))]}::uuid[]) and id = any(${ids.map((entry) => entry.eventId)}::uuid[])
        and received_at = any(${ids.map((entry) => entry.receivedAt.toISOString())}::timestamptz[])
    ) sized`;
  for (const row of rows) {
    if (row.payload === null) {
      found.deferred.add(row.id as string);
      continue;
    }
    found.types.set(row.id as string, row.type as string);
    found.bodies.set(
      row.id as string,
      webhookBody(
        row.id as string,
        row.type as string,
        row.payload as string,
        row.occurred_at as Date | null,
        (row.received_at as Date).getTime(),
        row.schema_version as number | null,
      ),
    );
  }
  return found;
}

/**
 * The documented body; the payload is spliced in as stored (validated JSON text), not
 * re-serialised. `schema_version`: the type's version at ingest, for typed events (API.md §3b).
 */
function webhookBody(
  id: string,
  type: string,
  payload: string,
  occurredAt: Date | null,
  receivedAtMs: number,
  schemaVersion: number | null,
): string {
  return (
    '{"id":"' +
    id +
    '","type":' +
    JSON.stringify(type) +
    ',"payload":' +
    payload +
    ',"occurred_at":' +
    (occurredAt ? '"' + isoMs(occurredAt.getTime()) + '"' : 'null') +
    ',"received_at":"' +
    isoMs(receivedAtMs) +
    '"' +
    (schemaVersion === null ? '' : ',"schema_version":' + schemaVersion) +
    '}'
  );
}
