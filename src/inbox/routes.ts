import type { Sql } from '../db/connect.js';
import { notFound } from '../errors.js';
import type { RouteSpec } from '../http/router.js';
import { isEventId, isoMs, uuidv7Time } from '../ids.js';
import { eventJson } from '../ingest/routes.js';
import { encodeCursor } from './cursor.js';
import { parseAckBody, parseInboxParams } from './params.js';
import { ackEvents, readInboxPage, type InboxPlanning } from './queries.js';
import { ACK_DOC, ACK_ONE_DOC, INBOX_DOC } from './schemas.js';

const ACK_BODY_LIMIT = 128 * 1024; // 1000 ids of 36 chars with quotes and commas is ~40 KiB

/**
 * Consumption (API.md §4): the inbox of unacknowledged events with cursors that never skip, and
 * acknowledgement. Every query is scoped by the caller's org_id, so another org's event is simply
 * not found.
 */
export function inboxRoutes(sql: Sql, planning: InboxPlanning): RouteSpec[] {
  return [
    {
      method: 'get',
      path: '/v1/inbox',
      auth: 'key',
      scope: 'events:read',
      doc: INBOX_DOC,
      async handle(ctx) {
        const params = parseInboxParams(ctx.query);
        const rows = await readInboxPage(
          sql,
          {
            orgId: ctx.principal!.orgId,
            order: params.order,
            from: params.from,
            limit: params.limit + 1,
            filter: params.filter,
          },
          planning,
        );
        // Shown: up to `limit` rows, and only those within the page's byte budget (a row past it
        // comes without its payload, src/inbox/queries.ts). Anything fetched and not shown is
        // has_more, and the cursor stops before it.
        let shown = Math.min(rows.length, params.limit);
        if (shown > 0 && rows[shown - 1]!.payload === null) shown--;
        const hasMore = rows.length > shown;
        let body = '{"events":[';
        for (let i = 0; i < shown; i++) body += (i === 0 ? '' : ',') + eventJson(rows[i]!, false);
        // An empty page keeps the position it was asked for: the consumer polls the same cursor
        // again and sees new events once they are below the watermark. Never null, so polling
        // never loses its place.
        const last = rows[shown - 1];
        const nextCursor = last
          ? encodeCursor(params.order, { seq: last.cursor_seq, id: last.id })
          : encodeCursor(params.order, params.from);
        body += '],"next_cursor":"' + nextCursor + '","has_more":' + hasMore + '}';
        return { status: 200, body };
      },
    },
    {
      method: 'post',
      path: '/v1/ack',
      auth: 'key',
      scope: 'events:read',
      bodyLimit: ACK_BODY_LIMIT,
      doc: ACK_DOC,
      async handle(ctx, body) {
        const ids = parseAckBody(body);
        const lookup = ids.filter(isEventId);
        const found =
          lookup.length === 0
            ? new Set<string>()
            : await ackEvents(
                sql,
                ctx.principal!.orgId,
                lookup,
                lookup.map((id) => isoMs(uuidv7Time(id))),
              );
        const notFoundIds = ids.filter((id) => !found.has(id));
        return { status: 200, body: JSON.stringify({ acked: found.size, not_found: notFoundIds }) };
      },
    },
    {
      method: 'del',
      path: '/v1/events/:id',
      auth: 'key',
      scope: 'events:read',
      doc: ACK_ONE_DOC,
      async handle(ctx) {
        const id = ctx.params[0]!;
        if (!isEventId(id)) throw notFound('Event');
        const found = await ackEvents(sql, ctx.principal!.orgId, [id], [isoMs(uuidv7Time(id))]);
        if (!found.has(id)) throw notFound('Event');
        return { status: 204, body: null };
      },
    },
  ];
}
