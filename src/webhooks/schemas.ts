import { FILTER_RE, MAX_EVENT_TYPES } from '../delivery/event-types.js';
import type { ParameterDoc, RouteDoc } from '../openapi/operation.js';
import { filterSchema } from '../filter/schema.js';
import { count, named, nullable, timestamp, uuid } from '../openapi/schema.js';
import { DELIVERY_STATUSES, MAX_DESCRIPTION, MAX_URL_LENGTH } from './service.js';
import { DEFAULT_STATS_WINDOW, STATS_WINDOWS } from './stats.js';

/** Webhook endpoints (API.md §5, docs/WEBHOOKS.md) as the OpenAPI document shows them. */

const url = {
  type: 'string',
  format: 'uri',
  minLength: 1,
  maxLength: MAX_URL_LENGTH,
  description:
    '`https://` (also `http://` with WEBHOOK_ALLOW_HTTP=true), without credentials. Hosts resolving to loopback, private, link-local or metadata addresses are 422 (unless WEBHOOK_ALLOW_PRIVATE=true).',
};
export const eventTypes = {
  type: 'array',
  maxItems: MAX_EVENT_TYPES,
  items: { type: 'string', pattern: FILTER_RE.source },
  description:
    'Exact types (`order.paid`) or prefixes ending in `*` (`user.*`; `*` alone is everything). Empty or missing: every event.',
};
export const description = { type: 'string', maxLength: MAX_DESCRIPTION };
export const filter = filterSchema('delivered (events it leaves out create no delivery)');
export const controls = {
  rate_limit_per_sec: nullable({
    type: 'integer',
    minimum: 1,
    maximum: 100_000,
    description:
      'At most this many attempts start in any one-second window, over all processes and nodes (±10%). null: no limit.',
  }),
  ordering: {
    type: 'string',
    enum: ['none', 'fifo', 'key'],
    description:
      '`fifo`: an event is sent only after every earlier matching event for this endpoint has succeeded or is dead. ' +
      '`key`: the same, per `ordering_key`: events with the same key in inbox order, different keys in parallel; events without a key are not held.',
  },
  max_in_flight: nullable({
    type: 'integer',
    minimum: 1,
    maximum: 1000,
    description:
      "A cap on concurrent requests to this endpoint; below it the server adapts to the endpoint's latency and errors. null: adaptive only.",
  }),
};

export const WebhookCreateSchema = named('WebhookCreate', {
  type: 'object',
  required: ['url'],
  additionalProperties: false,
  properties: {
    url,
    event_types: nullable({ ...eventTypes }),
    filter: { ...filter, default: null },
    description: nullable({ ...description }),
    rate_limit_per_sec: { ...controls.rate_limit_per_sec, default: null },
    ordering: { ...controls.ordering, default: 'none' },
    max_in_flight: { ...controls.max_in_flight, default: null },
  },
  examples: [
    {
      url: 'https://hooks.example.com/triggers',
      event_types: ['user.*', 'order.paid'],
      description: 'CRM sync',
      rate_limit_per_sec: 50,
      ordering: 'fifo',
    },
  ],
});

export const WebhookUpdateSchema = named('WebhookUpdate', {
  type: 'object',
  additionalProperties: false,
  description:
    'Only the fields given change; null clears `description`, `event_types` (to every event), `filter` and the nullable controls.',
  properties: {
    url,
    event_types: nullable({ ...eventTypes }),
    filter,
    description: nullable({ ...description }),
    enabled: {
      type: 'boolean',
      description:
        '`true` re-enables a disabled endpoint, from now on (events received while it was disabled are not sent); `false` disables it.',
    },
    ...controls,
  },
});

const webhookProperties = {
  id: uuid(),
  url: { type: 'string' },
  description: nullable({ type: 'string' }),
  event_types: { type: 'array', items: { type: 'string' }, description: 'Empty: every event.' },
  filter,
  enabled: { type: 'boolean' },
  disabled_reason: nullable({
    type: 'string',
    description: 'Why the server or a PATCH disabled it; null while enabled.',
  }),
  ...controls,
  created_at: timestamp(),
  updated_at: timestamp(),
};

export const secret = {
  type: 'string',
  pattern: '^whsec_[A-Za-z0-9+/]+={0,2}$',
  description: 'The signing secret, `whsec_` + base64; shown on create and rotate only.',
};

export const WebhookSchema = named('Webhook', {
  type: 'object',
  required: Object.keys(webhookProperties),
  properties: webhookProperties,
});

export const WebhookWithSecretSchema = named('WebhookWithSecret', {
  type: 'object',
  required: [...Object.keys(webhookProperties), 'secret'],
  properties: { ...webhookProperties, secret },
});

export const WebhookRotatedSchema = named('WebhookRotated', {
  type: 'object',
  required: [...Object.keys(webhookProperties), 'secret', 'previous_secret_expires_at'],
  properties: {
    ...webhookProperties,
    secret: { ...secret, description: 'The new signing secret.' },
    previous_secret_expires_at: timestamp(
      'Until then deliveries carry a second signature with the previous secret (24 h).',
    ),
  },
});

export const WebhookListSchema = named('WebhookList', {
  type: 'object',
  required: ['webhooks'],
  properties: { webhooks: { type: 'array', items: WebhookSchema, description: 'Oldest first, without secrets.' } },
});

export const DeliveryAttemptSchema = named('DeliveryAttempt', {
  type: 'object',
  required: ['at', 'response_status', 'latency_ms', 'error', 'next_attempt_at'],
  properties: {
    at: timestamp('When the attempt started.'),
    response_status: nullable({
      type: 'integer',
      minimum: 100,
      maximum: 999,
      description: 'null when no response came.',
    }),
    latency_ms: count('Milliseconds until the answer (or the failure).'),
    error: nullable({
      type: 'string',
      description: 'Why no response came (timeout, connection error, refused by the SSRF guard); null when one did.',
    }),
    next_attempt_at: nullable({ ...timestamp('When the retry this attempt scheduled is due; null when none.') }),
  },
});

export const DeliverySchema = named('Delivery', {
  type: 'object',
  required: ['id', 'event_id', 'status', 'attempts', 'next_attempt_at', 'created_at'],
  properties: {
    id: uuid('Derived from the endpoint and the event: it never changes, even when the event is sent again.'),
    event_id: uuid(),
    status: {
      type: 'string',
      enum: [...DELIVERY_STATUSES],
      description:
        '`pending`: queued by recover; `failed`: a retry is scheduled; `succeeded`: got a 2xx; `dead`: out of retries.',
    },
    attempts: { type: 'array', items: DeliveryAttemptSchema, description: 'Oldest first.' },
    next_attempt_at: nullable({ ...timestamp() }),
    created_at: timestamp(),
  },
});

export const DeliveryPageSchema = named('DeliveryPage', {
  type: 'object',
  required: ['deliveries', 'next_cursor'],
  properties: {
    deliveries: { type: 'array', items: DeliverySchema, description: 'Newest first.' },
    next_cursor: nullable({
      type: 'string',
      description: 'Pass as `cursor` for the next page; null on the last page.',
    }),
  },
});

export const RecoverRequestSchema = named('RecoverRequest', {
  type: 'object',
  required: ['since'],
  additionalProperties: false,
  properties: { since: { type: 'string', format: 'date-time', description: 'RFC 3339 with a time zone.' } },
  examples: [{ since: '2026-11-22T00:00:00Z' }],
});

export const RecoverResultSchema = named('RecoverResult', {
  type: 'object',
  required: ['queued'],
  properties: { queued: count('Failed and dead deliveries queued to be sent again.') },
});

const statsCounts = {
  succeeded: count('Attempts that succeeded.'),
  failed: count('Attempts that failed and will be retried.'),
  dead: count('Last attempts that failed: the delivery is `dead`.'),
  first_attempts: count("Events' first attempts (each also counted in one of the three above)."),
  lag_ms_avg: nullable({
    type: 'number',
    minimum: 0,
    description:
      "Mean 202→attempt lag of the first attempts: the attempt's start minus the event's `received_at`, in ms; null without first attempts.",
  }),
  lag_ms_max: nullable({
    type: 'integer',
    minimum: 0,
    description: 'The longest such lag, in ms; null without first attempts.',
  }),
  latency_ms_avg: nullable({
    type: 'number',
    minimum: 0,
    description: 'Mean latency of the attempts (request to answer, or to the error), in ms; null without attempts.',
  }),
};
const statsCountNames = Object.keys(statsCounts);

export const StatsBucketSchema = named('StatsBucket', {
  type: 'object',
  required: ['at', ...statsCountNames],
  properties: {
    at: timestamp('Start of the minute (UTC); an attempt counts in the minute it started.'),
    ...statsCounts,
  },
});

export const EndpointStatsSchema = named('EndpointStats', {
  type: 'object',
  required: ['window', 'bucket_seconds', 'from', 'to', 'buckets', 'totals'],
  properties: {
    window: { type: 'string', enum: Object.keys(STATS_WINDOWS) },
    bucket_seconds: { type: 'integer', const: 60 },
    from: timestamp('Start of the first bucket.'),
    to: timestamp('End of the last bucket (the current minute, still filling).'),
    buckets: {
      type: 'array',
      items: StatsBucketSchema,
      description:
        'One per minute of the window, oldest first, every minute present (zeros where nothing was attempted).',
    },
    totals: {
      type: 'object',
      required: statsCountNames,
      properties: statsCounts,
      description: 'The same figures over the whole window.',
    },
  },
});

/** The stats operation of webhooks and destinations alike (src/webhooks/stats.ts). */
export const statsQuery: Record<string, ParameterDoc> = {
  window: {
    description: 'How far back: one bucket a minute, ending with the current minute.',
    schema: { type: 'string', enum: Object.keys(STATS_WINDOWS), default: DEFAULT_STATS_WINDOW },
  },
};
export const STATS_DESCRIPTION =
  "Attempts per minute by outcome, the 202→attempt lag of first attempts and the attempts' latency, from per-minute counters the delivery processes keep as they record attempts (they agree with the attempt log once it is committed; kept 25 hours). The cost of a call is bounded by the window, not by the traffic.";

const webhookId: Record<string, ParameterDoc> = {
  id: { description: 'A webhook endpoint id (malformed or unknown: 404).', schema: uuid() },
};
const notFound = "`not_found`: no such webhook endpoint in the caller's org.";
const invalid = '`validation_failed`: bad or unknown fields (a refused URL included); `details` names each.';

export const CREATE_WEBHOOK_DOC: RouteDoc = {
  operationId: 'createWebhook',
  summary: 'Register a webhook endpoint',
  description:
    'Events received from now on that match `event_types` are delivered to it, at least once, signed with the Standard Webhooks scheme.',
  tag: 'Webhooks',
  requestBody: { schema: WebhookCreateSchema },
  responses: {
    201: {
      description: 'Registered; the only answer besides rotate-secret that shows the secret.',
      schema: WebhookWithSecretSchema,
    },
  },
  errors: {
    409: '`conflict`: the org already has `WEBHOOK_MAX_ENDPOINTS_PER_ORG` endpoints (default 100, enabled or not); delete one first.',
    422: invalid,
  },
};

export const LIST_WEBHOOKS_DOC: RouteDoc = {
  operationId: 'listWebhooks',
  summary: 'List webhook endpoints',
  tag: 'Webhooks',
  responses: { 200: { description: 'Every endpoint of the org.', schema: WebhookListSchema } },
};

export const GET_WEBHOOK_DOC: RouteDoc = {
  operationId: 'getWebhook',
  summary: 'Get a webhook endpoint',
  tag: 'Webhooks',
  pathParameters: webhookId,
  responses: { 200: { description: 'The endpoint, without its secret.', schema: WebhookSchema } },
  errors: { 404: notFound },
};

export const UPDATE_WEBHOOK_DOC: RouteDoc = {
  operationId: 'updateWebhook',
  summary: 'Change a webhook endpoint',
  tag: 'Webhooks',
  pathParameters: webhookId,
  requestBody: { schema: WebhookUpdateSchema },
  responses: { 200: { description: 'The endpoint as changed.', schema: WebhookSchema } },
  errors: { 404: notFound, 422: invalid },
};

export const DELETE_WEBHOOK_DOC: RouteDoc = {
  operationId: 'deleteWebhook',
  summary: 'Delete a webhook endpoint',
  description: 'Its pending deliveries and history go with it.',
  tag: 'Webhooks',
  pathParameters: webhookId,
  responses: { 204: { description: 'Deleted.' } },
  errors: { 404: notFound },
};

export const ROTATE_SECRET_DOC: RouteDoc = {
  operationId: 'rotateWebhookSecret',
  summary: "Rotate a webhook endpoint's secret",
  description:
    'A new secret at once: every delivery that starts after the answer carries its signature, on every node (so the answer comes about 1 s after the change commits). For 24 h deliveries are signed with both the new and the previous secret. The body may be empty.',
  tag: 'Webhooks',
  pathParameters: webhookId,
  requestBody: { schema: { type: 'object', additionalProperties: true, description: 'Ignored; may be omitted.' } },
  responses: { 200: { description: 'The endpoint with its new secret.', schema: WebhookRotatedSchema } },
  errors: { 404: notFound },
};

/** The query of a deliveries page, for webhooks and destinations alike. */
export const DELIVERIES_QUERY: Record<string, ParameterDoc> = {
  status: { description: 'Only deliveries in this state.', schema: { type: 'string', enum: [...DELIVERY_STATUSES] } },
  limit: { description: 'Deliveries per page.', schema: { type: 'integer', minimum: 1, maximum: 250, default: 50 } },
  cursor: { description: 'A `next_cursor` from the previous page.', schema: { type: 'string' } },
  event_id: { description: 'Only the delivery of this event.', schema: uuid() },
};

export const LIST_DELIVERIES_DOC: RouteDoc = {
  operationId: 'listWebhookDeliveries',
  summary: "List a webhook endpoint's deliveries",
  description: 'Newest first, each with its attempts. A delivery is listed once its first attempt has finished.',
  tag: 'Webhooks',
  pathParameters: webhookId,
  query: DELIVERIES_QUERY,
  responses: { 200: { description: 'One page of deliveries.', schema: DeliveryPageSchema } },
  errors: {
    404: notFound,
    422: '`validation_failed`: a bad `status`, `limit`, `cursor` or `event_id`; `details` names each.',
  },
};

export const WEBHOOK_STATS_DOC: RouteDoc = {
  operationId: 'getWebhookStats',
  summary: "A webhook endpoint's delivery stats by minute",
  description: STATS_DESCRIPTION,
  tag: 'Webhooks',
  pathParameters: webhookId,
  query: statsQuery,
  responses: { 200: { description: 'The window, minute by minute.', schema: EndpointStatsSchema } },
  errors: { 404: notFound, 422: '`validation_failed`: `window` is not one of `15m`, `1h`, `6h`, `24h`.' },
};

export const RECOVER_DOC: RouteDoc = {
  operationId: 'recoverWebhookDeliveries',
  summary: 'Re-send failed and dead deliveries',
  description:
    'Every failed and dead delivery created at or after `since` is sent again now, with a fresh run of the retry schedule (once the endpoint is enabled).',
  tag: 'Webhooks',
  pathParameters: webhookId,
  requestBody: { schema: RecoverRequestSchema },
  responses: { 202: { description: 'Queued.', schema: RecoverResultSchema } },
  errors: {
    404: notFound,
    422: '`validation_failed`: `since` is missing or not RFC 3339 with a time zone, or unknown fields.',
  },
};
