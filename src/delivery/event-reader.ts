import type { Sql } from '../db/connect.js';
import { isoMs, uuidv7Time } from '../ids.js';

/** A position in an org's events in commit order: (xid, id), as the inbox orders them. */
export interface StreamPosition {
  xid: string;
  id: string;
}

export interface StreamEvent {
  id: string;
  xid: string;
  type: string;
  receivedAtMs: number;
  /** The webhook request body, built once per read. */
  body: string;
}

export interface ReadResult {
  events: StreamEvent[];
  /** Every transaction below this xid had ended when the read's snapshot was taken. */
  watermark: bigint;
  /** The next xid to be assigned then: once the watermark reaches it, everything up to the read is visible. */
  xmax: bigint;
}

// Rows commit in xid order only up to the duration of one ingest transaction plus the time an
// event waits in a batch: a row after the cursor in (xid, id) order was received at most this long
// before the cursor's event (clock skew between nodes included, generously). It bounds
// received_at from below so a read touches the newest partitions, not all of them.
const RECEIVED_SLACK_MS = 3_600_000;

/**
 * The next events of one org after `after`, in (xid, id) order, acknowledged or not. Only
 * rows below the snapshot's xmin are returned (the inbox's no-skip watermark): a row whose
 * transaction commits late can never land behind a position already read.
 */
export async function readEventsAfter(sql: Sql, orgId: string, after: StreamPosition, deliverFromMs: number, limit: number): Promise<ReadResult> {
  // Event ids are UUIDv7 of received_at; a cursor at the start (zero UUID) or on an event
  // imported with another kind of id gives no time.
  const cursorMs = after.id[14] === '7' ? uuidv7Time(after.id) : 0;
  const floorMs = Math.max(deliverFromMs, cursorMs - RECEIVED_SLACK_MS);
  // One range on each partial index: events_unacked (acked_at is null) and
  // events_acked_by_org_xid (acked_at is not null). One statement, one snapshot: each row is in
  // exactly one of them. Both are limited, merged in order, and limited again.
  const floor = new Date(floorMs);
  const rows = await sql`
    select w.watermark::text as watermark, w.xmax::text as xmax,
      e.id, e.cursor_xid, e.type, e.payload, e.occurred_at, e.received_at
    from (select pg_snapshot_xmin(pg_current_snapshot()) as watermark, pg_snapshot_xmax(pg_current_snapshot()) as xmax) w
    left join lateral (
      select * from (
        (select id, xid, xid::text as cursor_xid, type, payload::text as payload, occurred_at, received_at
         from events
         where org_id = ${orgId} and acked_at is null
           and (xid, id) > (${after.xid}::xid8, ${after.id}::uuid) and xid < w.watermark and received_at >= ${floor}
         order by xid, id
         limit ${limit})
        union all
        (select id, xid, xid::text as cursor_xid, type, payload::text as payload, occurred_at, received_at
         from events
         where org_id = ${orgId} and acked_at is not null
           and (xid, id) > (${after.xid}::xid8, ${after.id}::uuid) and xid < w.watermark and received_at >= ${floor}
         order by xid, id
         limit ${limit})
      ) both_kinds
      order by xid, id
      limit ${limit}
    ) e on true`;
  const first = rows[0]!;
  const events: StreamEvent[] = [];
  for (const row of rows) {
    if (row.id === null) break;
    const receivedAtMs = (row.received_at as Date).getTime();
    events.push({
      id: row.id as string,
      xid: row.cursor_xid as string,
      type: row.type as string,
      receivedAtMs,
      body: webhookBody(row.id as string, row.type as string, row.payload as string, row.occurred_at as Date | null, receivedAtMs),
    });
  }
  return { events, watermark: BigInt(first.watermark as string), xmax: BigInt(first.xmax as string) };
}

/** Events by id, for retries of materialised deliveries. */
export async function readEventsById(sql: Sql, ids: readonly { eventId: string; receivedAt: Date }[]): Promise<Map<string, string>> {
  const bodies = new Map<string, string>();
  if (ids.length === 0) return bodies;
  const rows = await sql`
    select id, type, payload::text as payload, occurred_at, received_at
    from events
    where id = any(${ids.map((entry) => entry.eventId)}::uuid[])
      and received_at = any(${ids.map((entry) => entry.receivedAt.toISOString())}::timestamptz[])`;
  for (const row of rows) {
    bodies.set(row.id as string, webhookBody(row.id as string, row.type as string, row.payload as string, row.occurred_at as Date | null, (row.received_at as Date).getTime()));
  }
  return bodies;
}

/** The documented body; the payload is spliced in as stored (validated JSON text), not re-serialised. */
function webhookBody(id: string, type: string, payload: string, occurredAt: Date | null, receivedAtMs: number): string {
  return '{"id":"' + id + '","type":' + JSON.stringify(type) + ',"payload":' + payload +
    ',"occurred_at":' + (occurredAt ? '"' + isoMs(occurredAt.getTime()) + '"' : 'null') +
    ',"received_at":"' + isoMs(receivedAtMs) + '"}';
}
