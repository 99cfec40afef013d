import { eventIdParameter, InboxEventSchema } from '../ingest/schemas.js';
import type { RouteDoc } from '../openapi/operation.js';
import { count, named } from '../openapi/schema.js';
import { DEFAULT_LIMIT, MAX_ACK_IDS, MAX_LIMIT } from './params.js';

/** The inbox and acknowledgement (API.md §4) as the OpenAPI document shows them. */

export const InboxPageSchema = named('InboxPage', {
  type: 'object',
  required: ['events', 'next_cursor', 'has_more'],
  properties: {
    events: { type: 'array', items: InboxEventSchema },
    next_cursor: {
      type: 'string',
      description:
        'The position after the last event listed (opaque). Never null: on an empty page it is the position asked from, so polling with it again picks up new events.',
    },
    has_more: { type: 'boolean', description: 'More events are available right now.' },
  },
});

export const AckRequestSchema = named('AckRequest', {
  type: 'object',
  required: ['ids'],
  additionalProperties: false,
  properties: {
    ids: {
      type: 'array',
      minItems: 1,
      maxItems: MAX_ACK_IDS,
      items: { type: 'string', minLength: 1, maxLength: 64 },
      description: 'Event ids; duplicates are folded.',
    },
  },
  examples: [{ ids: ['0193a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b'] }],
});

export const AckResultSchema = named('AckResult', {
  type: 'object',
  required: ['acked', 'not_found'],
  properties: {
    acked: count("The request's ids that are now acknowledged, including ones acknowledged before."),
    not_found: {
      type: 'array',
      items: { type: 'string' },
      description: "Ids that are unknown, malformed, another org's or expired.",
    },
  },
});

export const INBOX_DOC: RouteDoc = {
  operationId: 'listInbox',
  summary: 'List unacknowledged events',
  description:
    "The org's unacknowledged events, oldest first (`order=desc`: newest first). A consumer that keeps following `next_cursor` sees every event that got a 202, exactly once. A page also stops before the event that would take its payloads past 8 MiB (at least one event), so it may hold fewer than `limit` with `has_more` true. Unknown or repeated query parameters are 422.",
  tag: 'Inbox',
  query: {
    limit: {
      description: 'Events per page.',
      schema: { type: 'integer', minimum: 1, maximum: MAX_LIMIT, default: DEFAULT_LIMIT },
    },
    cursor: { description: 'A `next_cursor` from an earlier page of the same order.', schema: { type: 'string' } },
    type: {
      description: 'An exact type (`user.signup`), a prefix ending in `*` (`user.*`), or `*` for all.',
      schema: { type: 'string', pattern: '^(\\*|[A-Za-z0-9._:-]{1,128}\\*?)$' },
    },
    order: {
      description: '`asc`: oldest first; `desc`: newest first.',
      schema: { type: 'string', enum: ['asc', 'desc'], default: 'asc' },
    },
  },
  responses: { 200: { description: 'One page of the inbox.', schema: InboxPageSchema } },
  errors: {
    422: '`validation_failed`: a bad, unknown or repeated query parameter (e.g. `limit=0`, a cursor of the other order); `details` names each.',
  },
};

export const ACK_DOC: RouteDoc = {
  operationId: 'ackEvents',
  summary: 'Acknowledge events',
  description: 'Idempotent: acknowledging twice is not an error, and an event keeps its first acknowledgement time.',
  tag: 'Inbox',
  requestBody: { schema: AckRequestSchema },
  responses: {
    200: { description: 'How many are acknowledged, and which ids were not found.', schema: AckResultSchema },
  },
  errors: { 422: '`validation_failed`: the body is not `{"ids": [...]}` with 1-1000 id strings.' },
};

export const ACK_ONE_DOC: RouteDoc = {
  operationId: 'ackEvent',
  summary: 'Acknowledge one event',
  description:
    'Idempotent: 204 also when it was acknowledged before. The event stays readable with GET until it expires.',
  tag: 'Inbox',
  pathParameters: eventIdParameter,
  responses: { 204: { description: 'Acknowledged.' } },
  errors: { 404: "`not_found`: no such event in the caller's org (or it expired)." },
};
