import type { Sql } from '../db/connect.js';
import type { RouteSpec } from '../http/router.js';
import { DELETE_EVENT_TYPE_DOC, GET_EVENT_TYPE_DOC, LIST_EVENT_TYPES_DOC, PUT_EVENT_TYPE_DOC } from './schemas.js';
import { deleteEventType, getEventType, listEventTypes, putEventType, type EventTypePolicy } from './service.js';

// Above the 64 KiB a schema may have, so that a larger one is a 422 naming `schema`, not a 413.
const EVENT_TYPE_BODY_LIMIT = 1024 * 1024;

/** Event types (API.md §3b), all under the event_types:manage scope. */
export function eventTypeRoutes(
  sql: Sql,
  policy: EventTypePolicy,
  changed: (orgId: string) => Promise<void>,
): RouteSpec[] {
  const scope = 'event_types:manage' as const;
  return [
    {
      method: 'get',
      path: '/v1/event-types',
      auth: 'key',
      scope,
      doc: LIST_EVENT_TYPES_DOC,
      handle: async (ctx) => ({ status: 200, body: await listEventTypes(sql, ctx.principal!.orgId) }),
    },
    {
      method: 'put',
      path: '/v1/event-types/:type',
      auth: 'key',
      scope,
      bodyLimit: EVENT_TYPE_BODY_LIMIT,
      doc: PUT_EVENT_TYPE_DOC,
      async handle(ctx, body) {
        const orgId = ctx.principal!.orgId;
        const { created, json } = await putEventType(sql, orgId, ctx.params[0]!, body, policy);
        // This process checks the next event against it; the others learn it from the NOTIFY.
        await changed(orgId);
        return { status: created ? 201 : 200, body: json };
      },
    },
    {
      method: 'get',
      path: '/v1/event-types/:type',
      auth: 'key',
      scope,
      doc: GET_EVENT_TYPE_DOC,
      handle: async (ctx) => ({ status: 200, body: await getEventType(sql, ctx.principal!.orgId, ctx.params[0]!) }),
    },
    {
      method: 'del',
      path: '/v1/event-types/:type',
      auth: 'key',
      scope,
      doc: DELETE_EVENT_TYPE_DOC,
      async handle(ctx) {
        await deleteEventType(sql, ctx.principal!.orgId, ctx.params[0]!);
        await changed(ctx.principal!.orgId);
        return { status: 204, body: null };
      },
    },
  ];
}
