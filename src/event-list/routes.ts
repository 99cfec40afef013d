import type { Sql } from '../db/connect.js';
import { eventJson } from '../event-json.js';
import type { RouteSpec } from '../http/router.js';
import { encodeListCursor } from './cursor.js';
import { isEmptyWindow, parseEventListParams } from './params.js';
import { eventListQuery, type EventListRow } from './queries.js';
import { LIST_EVENTS_DOC } from './schemas.js';

export interface EventListOptions {
  /** RETENTION_DAYS: no window reaches further back than what is kept. */
  retentionDays: number;
}

const EMPTY_PAGE = '{"events":[],"next_cursor":null}';

/**
 * GET /v1/events (API.md §4): the org's events newest first, by type and time, for people (the
 * console's events page) rather than consumers (the inbox). Every query is scoped by the caller's
 * org_id, so another org's events are never examined.
 */
export function eventListRoutes(sql: Sql, options: EventListOptions): RouteSpec[] {
  return [
    {
      method: 'get',
      path: '/v1/events',
      auth: 'key',
      scope: 'events:read',
      doc: LIST_EVENTS_DOC,
      async handle(ctx) {
        const params = parseEventListParams(ctx.query, Date.now(), options.retentionDays);
        if (isEmptyWindow(params)) return { status: 200, body: EMPTY_PAGE };
        const rows = await eventListQuery(sql, { ...params, orgId: ctx.principal!.orgId });
        return { status: 200, body: pageJson(rows, params.limit, params.sinceMs) };
      },
    },
  ];
}

/**
 * The page from the rows fetched (src/event-list/queries.ts): matches in order, up to `limit` and
 * within the byte budget (a match without its payload is past it), then where to continue: before
 * the last event shown when a match was left over, before the last event examined when a typed
 * scan stopped at its cap, nowhere (null) when the window is exhausted.
 */
export function pageJson(rows: EventListRow[], limit: number, sinceMs: number): string {
  let body = '{"events":[';
  let shown = 0;
  let continueBefore: string | null = null;
  for (const row of rows) {
    if (!row.hit) {
      continueBefore = row.id; // a capped scan's last row: everything down to it was examined
      break;
    }
    if (shown === limit || row.payload === null) {
      continueBefore = rows[shown - 1]!.id;
      break;
    }
    body += (shown === 0 ? '' : ',') + eventJson(row, true);
    shown++;
    if (row.last_scanned) {
      continueBefore = row.id; // shown, and the scan stopped at it: there may be more below
      break;
    }
  }
  const nextCursor =
    continueBefore === null ? 'null' : '"' + encodeListCursor({ beforeId: continueBefore, sinceMs }) + '"';
  return body + '],"next_cursor":' + nextCursor + '}';
}
