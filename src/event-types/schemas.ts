import type { RouteDoc } from '../openapi/operation.js';
import { named, nullable, timestamp } from '../openapi/schema.js';
import { TYPE_RE } from '../ingest/validate.js';
import { SCHEMA_COMPILE_LIMIT_MS } from './schema-pool.js';
import { MAX_CHECKS_PER_VALUE, MAX_SCHEMA_BYTES, MAX_SCHEMA_DEPTH, MAX_SCHEMA_WEIGHT } from './schema-check.js';
import { MAX_TYPE_DESCRIPTION } from './service.js';

/** Event types (API.md §3b, docs/EVENT-TYPES.md) as the OpenAPI document shows them. */

const limits =
  `At most ${MAX_SCHEMA_BYTES} bytes serialised and ${MAX_SCHEMA_DEPTH} levels deep; \`$ref\` only to places inside the schema (\`#…\`), without cycles; ` +
  `at most ${MAX_SCHEMA_WEIGHT} subschemas and enum values once every \`$ref\` is expanded, and at most ${MAX_CHECKS_PER_VALUE} applying to any one value; ` +
  '`pattern` and `patternProperties` without nested quantifiers, repeated alternatives or backreferences; `uniqueItems` only over scalar `items`; ' +
  `compiled within ${SCHEMA_COMPILE_LIMIT_MS} ms. See docs/EVENT-TYPES.md.`;

export const EventTypeInputSchema = named('EventTypeInput', {
  type: 'object',
  required: ['schema'],
  additionalProperties: false,
  properties: {
    schema: {
      type: 'object',
      additionalProperties: true,
      description: `A JSON Schema (2020-12) for the events' \`payload\`. ${limits}`,
    },
    description: nullable({ type: 'string', maxLength: MAX_TYPE_DESCRIPTION }),
    deprecated: {
      type: 'boolean',
      default: false,
      description: 'Shown to producers and consumers; events of a deprecated type are still accepted.',
    },
  },
  examples: [
    {
      schema: {
        type: 'object',
        required: ['order_id', 'amount'],
        properties: {
          order_id: { type: 'string' },
          amount: { type: 'number', minimum: 0 },
          currency: { enum: ['EUR', 'USD'] },
        },
      },
      description: 'An order was paid.',
    },
  ],
});

export const EventTypeSchema = named('EventType', {
  type: 'object',
  required: ['type', 'schema', 'description', 'deprecated', 'version', 'created_at', 'updated_at'],
  properties: {
    type: { type: 'string', pattern: TYPE_RE.source },
    schema: { type: 'object', additionalProperties: true, description: 'As registered (key order kept).' },
    description: nullable({ type: 'string' }),
    deprecated: { type: 'boolean' },
    version: {
      type: 'integer',
      minimum: 1,
      description: 'Starts at 1 and rises on every change; events record it as `schema_version`.',
    },
    created_at: timestamp(),
    updated_at: timestamp(),
  },
});

const typeParameter = {
  type: {
    description: "The event type, by the rules of an event's `type` (1-128 characters of `A-Z a-z 0-9 . _ : -`).",
    schema: { type: 'string', pattern: TYPE_RE.source },
  },
};

export const PUT_EVENT_TYPE_DOC: RouteDoc = {
  operationId: 'putEventType',
  summary: "Register or replace an event type's schema",
  description:
    'From the answer on (on every process and node within 2 s), events of this type whose payload does not validate are refused with 422 before anything is stored. `version` rises when the schema, description or deprecated flag changes; a PUT that changes nothing keeps it (200).',
  tag: 'Event types',
  pathParameters: typeParameter,
  requestBody: { schema: EventTypeInputSchema },
  responses: {
    201: { description: 'Registered (version 1).', schema: EventTypeSchema },
    200: { description: 'Replaced (or unchanged).', schema: EventTypeSchema },
  },
  errors: {
    409: '`conflict`: the org already has `EVENT_TYPES_MAX_PER_ORG` event types (default 500).',
    422: '`validation_failed`: a bad `{type}`, unknown fields, or a schema that is not valid JSON Schema 2020-12 or breaks a limit; `details` names `schema` or a JSON pointer inside it (`/schema/properties/amount/pattern`).',
    429: '`rate_limited`: too many schemas being compiled in this process at once; retry shortly.',
  },
};

export const LIST_EVENT_TYPES_DOC: RouteDoc = {
  operationId: 'listEventTypes',
  summary: "List the org's event types",
  tag: 'Event types',
  responses: {
    200: {
      description: 'Every registered type, by type name.',
      schema: {
        type: 'object',
        required: ['event_types'],
        properties: { event_types: { type: 'array', items: EventTypeSchema } },
      },
    },
  },
};

export const GET_EVENT_TYPE_DOC: RouteDoc = {
  operationId: 'getEventType',
  summary: 'Get an event type',
  tag: 'Event types',
  pathParameters: typeParameter,
  responses: { 200: { description: 'The type and its schema.', schema: EventTypeSchema } },
  errors: { 404: "`not_found`: no such type registered in the caller's org." },
};

export const DELETE_EVENT_TYPE_DOC: RouteDoc = {
  operationId: 'deleteEventType',
  summary: 'Delete an event type',
  description:
    'Events of the type are accepted without a check from then on (unless the org sets `require_event_types`). Registered again, it starts at version 1.',
  tag: 'Event types',
  pathParameters: typeParameter,
  responses: { 204: { description: 'Deleted.' } },
  errors: { 404: "`not_found`: no such type registered in the caller's org." },
};
