import { STATUS_OF, type ErrorCode } from '../errors.js';
import type { ErrorStatus, Tag } from './operation.js';
import { named, type NamedSchema } from './schema.js';

/**
 * What every part of the document shares: the error shape (API.md §1), the headers every answer
 * carries, the authentication schemes and the tags. Domain schemas live beside their routes.
 */

const ERROR_CODES = Object.keys(STATUS_OF) as ErrorCode[];

export const FieldErrorSchema = named('FieldError', {
  type: 'object',
  required: ['field', 'message'],
  properties: {
    field: {
      type: 'string',
      description: 'The body field, query parameter or header at fault (`body` for the body as a whole).',
    },
    message: { type: 'string' },
  },
});

export const ErrorSchema = named('Error', {
  type: 'object',
  required: ['code', 'message', 'request_id'],
  properties: {
    code: { type: 'string', enum: ERROR_CODES, description: 'Stable code; the HTTP status follows from it.' },
    message: { type: 'string', description: 'For people; may change.' },
    details: {
      type: 'array',
      minItems: 1,
      items: FieldErrorSchema,
      description: 'Every bad field or parameter (422, some 413); absent when not useful.',
    },
    request_id: { type: 'string', description: 'Equals the X-Request-Id header of the answer.' },
  },
});

function schemaName(code: ErrorCode): string {
  if (code === 'internal_error') return 'InternalError';
  return (
    code
      .split('_')
      .map((word) => word[0]!.toUpperCase() + word.slice(1))
      .join('') + 'Error'
  );
}

/** `{"error": {...}}` with `code` pinned to the one code of `status`. */
const ERROR_RESPONSES = new Map<number, NamedSchema>(
  ERROR_CODES.map((code) => [
    STATUS_OF[code],
    named(schemaName(code), {
      type: 'object',
      required: ['error'],
      properties: { error: { allOf: [ErrorSchema, { required: ['code'], properties: { code: { const: code } } }] } },
      description: `The error answer of status ${STATUS_OF[code]}: \`error.code\` is always \`${code}\`.`,
    }),
  ]),
);

export function errorResponseSchema(status: ErrorStatus | 500): NamedSchema {
  return ERROR_RESPONSES.get(status)!;
}

/** The schemas only reachable by $ref from inside other components (the builder adds them always). */
export const BASE_SCHEMAS: NamedSchema[] = [ErrorSchema, FieldErrorSchema];

export const ERROR_DESCRIPTIONS: Record<ErrorStatus | 500, string> = {
  400: '`invalid_json`: the body is empty, not parseable JSON, or invalid UTF-8.',
  401: '`unauthorized`: missing, malformed, unknown or revoked credentials (one message for all).',
  403: '`forbidden`: the API key lacks the scope this route needs.',
  404: "`not_found`: no such resource in the caller's org.",
  405: '`method_not_allowed`: the path exists, but not with this method; `Allow` lists the methods it has.',
  409: "`conflict`: the request conflicts with the resource's state.",
  413: "`payload_too_large`: the body is over the route's limit, refused while streaming (possibly before authentication).",
  415: '`unsupported_media_type`: the body is not `application/json` (a `charset` parameter is fine).',
  422: '`validation_failed`: the JSON is well-formed but fields are not; `details` lists every bad field.',
  429: "`rate_limited`: over the org's rate limit; retry after `Retry-After` seconds.",
  503: '`unavailable`: storage down, the server overloaded or shutting down; the request was not carried out. Retry after `Retry-After` seconds.',
  500: '`internal_error`: an unexpected failure (a bug), logged with the request id. Never a stack trace.',
};

export const HEADERS = {
  'X-Request-Id': {
    description:
      "The request's id: the incoming `X-Request-Id` when it is 1-128 characters of `[A-Za-z0-9._:-]`, else a generated one. Error bodies repeat it as `request_id`.",
    schema: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$' },
  },
  'X-Response-Time': {
    description: 'Server time spent on the request, in milliseconds, e.g. `0.42ms`.',
    schema: { type: 'string', pattern: '^\\d+\\.\\d{2}ms$' },
  },
  'RateLimit-Limit': {
    description: "The org's rate limit, events per second.",
    schema: { type: 'integer', minimum: 1 },
  },
  'RateLimit-Remaining': {
    description: 'Events the org may send now (at most its burst).',
    schema: { type: 'integer', minimum: 0 },
  },
  'RateLimit-Reset': {
    description:
      "Seconds until a full second's worth of events (RateLimit-Limit) is available again; 0 when it is now.",
    schema: { type: 'integer', minimum: 0 },
  },
  'Retry-After': {
    description: 'Seconds to wait before retrying.',
    schema: { type: 'integer', minimum: 1 },
  },
  Allow: {
    description: 'The methods this path answers, comma-separated (e.g. `GET, PATCH, DELETE`).',
    schema: { type: 'string' },
  },
} as const;

export type HeaderName = keyof typeof HEADERS;
export const RATE_LIMIT_HEADERS: HeaderName[] = ['RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset'];

export const REQUEST_ID_PARAMETER = {
  name: 'X-Request-Id',
  in: 'header',
  required: false,
  description:
    "Your id for this request (1-128 characters of `[A-Za-z0-9._:-]`), echoed in the answer's `X-Request-Id`; otherwise one is generated.",
  schema: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$' },
};

export const SECURITY_SCHEMES = {
  ApiKey: {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'zt_<env>_<kid>_<secret>',
    description:
      "An org's API key as `Authorization: Bearer <key>`. The requirement lists the scope the route needs (`events:write`, `events:read`, `webhooks:manage`, `event_types:manage`); a key created without scopes has all four.",
  },
  ApiKeyHeader: {
    type: 'apiKey',
    in: 'header',
    name: 'X-API-Key',
    description: 'The same API key as `X-API-Key: <key>` (used when there is no `Authorization: Bearer` header).',
  },
  AdminToken: {
    type: 'http',
    scheme: 'bearer',
    description:
      "The server's `ADMIN_TOKEN` as `Authorization: Bearer <ADMIN_TOKEN>`. Without ADMIN_TOKEN set, every admin route answers 404.",
  },
  MetricsToken: {
    type: 'http',
    scheme: 'bearer',
    description:
      "The server's `METRICS_TOKEN` as `Authorization: Bearer <METRICS_TOKEN>`, required by GET /metrics only when METRICS_TOKEN is set.",
  },
} as const;

export const TAGS: Array<{ name: Tag; description: string }> = [
  { name: 'Authentication', description: 'The calling API key: its org and scopes (any working key).' },
  {
    name: 'Events',
    description: 'Ingestion (`events:write`), and reading or acknowledging one event (`events:read`).',
  },
  {
    name: 'Event types',
    description: 'JSON Schemas registered per event type and checked before the 202 (`event_types:manage`).',
  },
  {
    name: 'Inbox',
    description: 'Polling unacknowledged events with cursors that never skip, and acknowledging them (`events:read`).',
  },
  {
    name: 'Consumer groups',
    description:
      "Named, durable positions in the org's event stream: competing consumers with leases, acks, nacks, dead letters and replay (`events:read`).",
  },
  {
    name: 'Webhooks',
    description: 'Webhook endpoints, their secrets, delivery history and recovery (`webhooks:manage`).',
  },
  {
    name: 'Destinations',
    description:
      'Delivery to RabbitMQ, NATS JetStream and Redis Streams with the life of a webhook endpoint: event types, filter, controls, attempt log, recover (`webhooks:manage`).',
  },
  { name: 'Admin', description: "Orgs and API keys, with the server's ADMIN_TOKEN." },
  { name: 'Operations', description: 'Health, metrics and this document; no API key.' },
];
