import { FieldErrorSchema } from '../openapi/components.js';
import type { RouteDoc } from '../openapi/operation.js';
import { count, named, nullable, timestamp, uuid } from '../openapi/schema.js';
import { MAX_PAYLOAD_BYTES, TYPE_RE } from './validate.js';

/** Ingestion and event reads (API.md §3, §4) as the OpenAPI document shows them. */

const TYPE_PATTERN = TYPE_RE.source;

const eventType = {
  type: 'string',
  pattern: TYPE_PATTERN,
  minLength: 1,
  maxLength: 128,
  description: 'e.g. `user.signup`.',
};

export const EventInputSchema = named('EventInput', {
  type: 'object',
  required: ['type', 'payload'],
  additionalProperties: false,
  properties: {
    type: eventType,
    payload: {
      type: 'object',
      additionalProperties: true,
      description: `Any JSON object, at most ${MAX_PAYLOAD_BYTES} bytes serialised (larger: 413). Strings with NUL or lone surrogates, numbers out of the double range and nesting deeper than 100 are 422.`,
    },
    dedup_id: nullable({
      type: 'string',
      minLength: 1,
      maxLength: 256,
      description: 'Events of one org with the same dedup_id within the dedup window (24 h) are stored once.',
    }),
    occurred_at: nullable({
      type: 'string',
      format: 'date-time',
      description:
        'RFC 3339 with a time zone, in years 0001-9999 once converted to UTC; returned in UTC with milliseconds.',
    }),
    ordering_key: nullable({
      type: 'string',
      minLength: 1,
      maxLength: 256,
      description:
        'Events with the same key are delivered in order to endpoints with `ordering: "key"`; stored and shown by GET /v1/events/{id}.',
    }),
  },
  description:
    'Unknown fields are 422, naming the field. When the org registered a schema for `type` (PUT /v1/event-types/{type}), `payload` must validate against it (422 otherwise, `details` as JSON pointers such as `/payload/amount`).',
  examples: [
    {
      type: 'user.signup',
      payload: { user_id: 42, plan: 'pro' },
      dedup_id: 'signup-42',
      occurred_at: '2026-11-22T14:59:59Z',
    },
  ],
});

/** The answer to an ingested event: `accepted` (202, stored now) or `duplicate` (200, stored before). */
export const IngestResultSchema = named('IngestResult', {
  type: 'object',
  required: ['id', 'status', 'received_at'],
  properties: {
    id: uuid("The event's id (for a duplicate, the original event's)."),
    status: { type: 'string', enum: ['accepted', 'duplicate'] },
    received_at: timestamp('When the event (for a duplicate, the original) was received.'),
  },
});

const eventProperties = {
  id: uuid(),
  type: { type: 'string', pattern: TYPE_PATTERN },
  payload: {
    type: 'object',
    additionalProperties: true,
    description: 'As sent: key order kept, whitespace removed, the last of duplicate keys.',
  },
  dedup_id: nullable({ type: 'string' }),
  occurred_at: nullable({ ...timestamp() }),
  received_at: timestamp(),
};

const typedProperties = {
  schema_version: {
    type: 'integer',
    minimum: 1,
    description:
      "The version of the type's schema the payload was checked against at ingest; absent for types without a schema.",
  },
  ordering_key: { type: 'string', description: 'As sent; absent when none was.' },
};

/** An event as the inbox and consumer groups list it. */
export const InboxEventSchema = named('InboxEvent', {
  type: 'object',
  required: Object.keys(eventProperties),
  properties: { ...eventProperties, ...typedProperties },
});

/** An event as GET /v1/events/{id} shows it: with its acknowledgement time. */
export const EventSchema = named('Event', {
  type: 'object',
  required: [...Object.keys(eventProperties), 'acked_at'],
  properties: {
    ...eventProperties,
    ...typedProperties,
    acked_at: nullable({ ...timestamp('When it was first acknowledged; null while it is in the inbox.') }),
  },
});

export const BatchRequestSchema = named('BatchRequest', {
  type: 'object',
  required: ['events'],
  additionalProperties: false,
  properties: {
    events: {
      type: 'array',
      minItems: 1,
      maxItems: 1000,
      items: EventInputSchema,
      description: 'Each item is validated on its own: a bad one is rejected in `results`, not the batch.',
    },
  },
  examples: [
    {
      events: [
        { type: 'order.paid', payload: { order: 7 } },
        { type: 'order.shipped', payload: { order: 7 }, dedup_id: 'ship-7' },
      ],
    },
  ],
});

export const ItemErrorSchema = named('ItemError', {
  type: 'object',
  required: ['code', 'message'],
  properties: {
    code: { type: 'string', enum: ['validation_failed', 'payload_too_large', 'unavailable'] },
    message: { type: 'string' },
    details: { type: 'array', minItems: 1, items: FieldErrorSchema },
  },
  description: 'Why one batch item was not stored; the error shape without request_id.',
});

export const BatchResultSchema = named('BatchResult', {
  type: 'object',
  required: ['accepted', 'duplicates', 'rejected', 'results'],
  properties: {
    accepted: count('Items stored now.'),
    duplicates: count('Items whose dedup_id was seen before (or earlier in this batch).'),
    rejected: count('Items not stored.'),
    results: {
      type: 'array',
      description: 'One per item, in the order sent.',
      items: {
        oneOf: [
          {
            type: 'object',
            required: ['index', 'status', 'id'],
            properties: {
              index: count("The item's position in `events`."),
              status: { type: 'string', enum: ['accepted', 'duplicate'] },
              id: uuid(),
            },
          },
          {
            type: 'object',
            required: ['index', 'status', 'error'],
            properties: {
              index: count("The item's position in `events`."),
              status: { const: 'rejected' },
              error: ItemErrorSchema,
            },
          },
        ],
      },
    },
  },
});

export const eventIdParameter = {
  id: { description: 'An event id (a malformed or unknown id is 404).', schema: uuid() },
};

export const INGEST_EVENT_DOC: RouteDoc = {
  operationId: 'ingestEvent',
  summary: 'Ingest one event',
  description:
    'Answers 202 only once the event is durably committed. A dedup_id (or Idempotency-Key) seen before in the org answers 200 `duplicate` with the original id, whatever the body, and stores nothing.',
  tag: 'Events',
  headers: {
    'Idempotency-Key': {
      description:
        "The same as the body's `dedup_id` (the body wins when both are given); 1-256 characters. Empty is ignored.",
      schema: { type: 'string', maxLength: 256 },
    },
  },
  requestBody: { schema: EventInputSchema },
  responses: {
    202: { description: 'Stored (committed to Postgres).', schema: ingestResultWith('accepted') },
    200: {
      description: "A duplicate of an event stored before: nothing stored, the original's id and received_at.",
      schema: ingestResultWith('duplicate'),
    },
  },
  errors: {
    413: '`payload_too_large`: the body is over 512 KiB, or `payload` is over 256 KiB serialised (then with `details` naming `payload`).',
    422: '`validation_failed`: bad or unknown fields; `details` names each. Also a payload its type\'s schema refuses (each failure a JSON pointer such as `/payload/amount`), or a type without a schema in an org with `require_event_types` (`field: "type"`).',
    429: "`rate_limited`: over the org's rate limit (an event its schema refuses costs a token too), or over its schema compile budget in this process (docs/EVENT-TYPES.md); nothing stored.",
    503: '`unavailable`: storage down or the server overloaded; nothing stored.',
  },
};

function ingestResultWith(status: 'accepted' | 'duplicate') {
  return { allOf: [IngestResultSchema, { required: ['status'], properties: { status: { const: status } } }] };
}

export const INGEST_BATCH_DOC: RouteDoc = {
  operationId: 'ingestBatch',
  summary: 'Ingest up to 1000 events',
  description:
    'Items are validated one by one: valid items are stored (durably) even when others are rejected. The batch costs one rate-limit token per valid event. If storage failed for every valid item, the whole request is 503.',
  tag: 'Events',
  requestBody: { schema: BatchRequestSchema },
  responses: {
    200: { description: 'Per-item results.', schema: BatchResultSchema },
  },
  errors: {
    422: '`validation_failed`: the envelope is not `{"events": [...]}` with 1-1000 items.',
    429: '`rate_limited`: the batch needs more tokens than the org has (or than its burst), or the org is over its schema compile budget in this process (docs/EVENT-TYPES.md); nothing stored.',
    503: '`unavailable`: storage down or the server overloaded; nothing stored.',
  },
};

export const GET_EVENT_DOC: RouteDoc = {
  operationId: 'getEvent',
  summary: 'Get one event',
  description: 'Acknowledged or not, until it expires (RETENTION_DAYS).',
  tag: 'Events',
  pathParameters: eventIdParameter,
  responses: { 200: { description: 'The event.', schema: EventSchema } },
  errors: { 404: "`not_found`: no such event in the caller's org (or it expired)." },
};
