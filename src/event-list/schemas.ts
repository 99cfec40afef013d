import { EventSchema } from '../ingest/schemas.js';
import type { RouteDoc } from '../openapi/operation.js';
import { named, nullable } from '../openapi/schema.js';
import { DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT } from './params.js';
import { LIST_SCAN_ROWS } from './queries.js';

/** GET /v1/events (API.md §4) as the OpenAPI document shows it. */

export const EventListPageSchema = named('EventListPage', {
  type: 'object',
  required: ['events', 'next_cursor'],
  properties: {
    events: { type: 'array', items: EventSchema, description: 'Newest first, each as GET /v1/events/{id} shows it.' },
    next_cursor: nullable({
      type: 'string',
      description:
        'Pass it as `cursor` (with the same `type`, `until` and `limit`) for the next page; null on the last page of the window. Opaque.',
    }),
  },
});

const TIME = { type: 'string', format: 'date-time' };

export const LIST_EVENTS_DOC: RouteDoc = {
  operationId: 'listEvents',
  summary: 'List events by type and time',
  description:
    "The org's events, acknowledged or not, newest first (by `received_at`, ties by id), within a window of `received_at`: `since` inclusive, `until` exclusive, to the millisecond; by default the 24 hours before `until` (or before now). A window reaching past RETENTION_DAYS holds only what is kept. " +
    'A walk that follows `next_cursor` lists every event of the window committed before its first page exactly once; the cursor keeps the `since` of its first page. ' +
    `With \`type\`, a page examines at most ${LIST_SCAN_ROWS} events: for a rare type it may hold fewer than \`limit\`, even none, with a \`next_cursor\` to go on. ` +
    'A page also stops before the event that would take its payloads past 8 MiB (at least one event). Unknown or repeated query parameters are 422.',
  tag: 'Events',
  query: {
    type: {
      description: 'An exact type (`user.signup`), a prefix ending in `*` (`user.*`), or `*` for all.',
      schema: { type: 'string', pattern: '^(?:[A-Za-z0-9._:-]{1,128}|[A-Za-z0-9._:-]{0,127}\\*)$' },
    },
    since: {
      description:
        'Events received at or after this time (RFC 3339 with a time zone). Default: `until` (or now) minus 24 hours.',
      schema: TIME,
    },
    until: { description: 'Events received before this time (RFC 3339 with a time zone).', schema: TIME },
    limit: {
      description: 'Events per page.',
      schema: { type: 'integer', minimum: 1, maximum: MAX_LIST_LIMIT, default: DEFAULT_LIST_LIMIT },
    },
    cursor: { description: 'A `next_cursor` from the previous page.', schema: { type: 'string' } },
  },
  responses: { 200: { description: 'One page of events.', schema: EventListPageSchema } },
  errors: {
    422: '`validation_failed`: a bad, unknown or repeated query parameter (e.g. `limit=0`, `since` without a time zone, `until` not after `since`, a cursor this API did not issue); `details` names each.',
  },
};
