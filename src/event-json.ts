import { isoMs } from './ids.js';

/**
 * An event as every route shows it (API.md: GET /v1/events/:id, the inbox, consumer groups' receive
 * and dead letters), written once here for the rooms that read events.
 */

/** The columns of an event that the API shows, as read from `events` with `payload::text`. */
export interface EventRow {
  id: string;
  type: string;
  /** The stored json as text; null where a query left it out (past a page's byte budget). */
  payload: string | null;
  dedup_id: string | null;
  occurred_at: Date | null;
  received_at: Date;
  acked_at?: Date | null;
  /** The type's version at ingest (API.md §3b); absent when the query did not select it. */
  schema_version?: number | null;
  ordering_key?: string | null;
}

/**
 * An event row as the API shows it; the payload is spliced in as stored, not re-serialised.
 * `schema_version` and `ordering_key` appear when the row has them (and the query selected them).
 */
export function eventJson(row: EventRow, withAck: boolean): string {
  return (
    '{"id":"' +
    row.id +
    '","type":' +
    JSON.stringify(row.type) +
    ',"payload":' +
    row.payload +
    ',"dedup_id":' +
    JSON.stringify(row.dedup_id) +
    ',"occurred_at":' +
    (row.occurred_at ? '"' + isoMs(row.occurred_at.getTime()) + '"' : 'null') +
    ',"received_at":"' +
    isoMs(row.received_at.getTime()) +
    '"' +
    (row.schema_version != null ? ',"schema_version":' + row.schema_version : '') +
    (row.ordering_key != null ? ',"ordering_key":' + JSON.stringify(row.ordering_key) : '') +
    (withAck ? ',"acked_at":' + (row.acked_at ? '"' + isoMs(row.acked_at.getTime()) + '"' : 'null') : '') +
    '}'
  );
}
