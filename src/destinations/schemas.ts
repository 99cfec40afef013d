import type { ParameterDoc, RouteDoc } from '../openapi/operation.js';
import { named, nullable, timestamp, uuid } from '../openapi/schema.js';
import {
  controls,
  DELIVERIES_QUERY,
  DeliveryPageSchema,
  description,
  EndpointStatsSchema,
  eventTypes,
  filter,
  RecoverRequestSchema,
  RecoverResultSchema,
  secret,
  STATS_DESCRIPTION,
  statsQuery,
} from '../webhooks/schemas.js';

/** Broker destinations (API.md §5b, docs/DESTINATIONS.md) as the OpenAPI document shows them. */

const type = {
  type: 'string',
  enum: ['rabbitmq', 'nats', 'redis_stream'],
  description: 'Which broker; fixed once created.',
};

const config = {
  type: 'object',
  description:
    '`rabbitmq`: `{"url": "amqp[s]://user:pass@host:port/vhost", "exchange", "routing_key"?}` (default routing key: the event type; published persistent and mandatory, with publisher confirms). ' +
    '`nats`: `{"servers": ["nats://host:port"], "subject", "credentials"?}` (a JetStream publish with the event id as Nats-Msg-Id; `credentials`: the text of a .creds file). ' +
    '`redis_stream`: `{"url": "redis[s]://…", "stream", "maxlen"?}` (one XADD per event, trimmed with MAXLEN ~ maxlen). ' +
    "Every host must be in the server's DESTINATION_ALLOWED_HOSTS. Credentials are stored (encrypted with SECRETS_KEY when set) and never shown again: answers mask them as `****`. " +
    'In a PATCH, only the fields given change (null removes an optional one).',
  additionalProperties: true,
};

export const DestinationCreateSchema = named('DestinationCreate', {
  type: 'object',
  required: ['type', 'config'],
  additionalProperties: false,
  properties: {
    type,
    config,
    event_types: nullable({ ...eventTypes }),
    filter: { ...filter, default: null },
    description: nullable({ ...description }),
    rate_limit_per_sec: { ...controls.rate_limit_per_sec, default: null },
    ordering: { ...controls.ordering, default: 'none' },
    max_in_flight: { ...controls.max_in_flight, default: null },
  },
  examples: [
    {
      type: 'rabbitmq',
      config: { url: 'amqps://triggers:secret@mq.internal:5671/prod', exchange: 'events' },
      event_types: ['order.*'],
    },
  ],
});

export const DestinationUpdateSchema = named('DestinationUpdate', {
  type: 'object',
  additionalProperties: false,
  description:
    'Only the fields given change; null clears `description`, `event_types` (to every event), `filter` and the nullable controls.',
  properties: {
    config,
    event_types: nullable({ ...eventTypes }),
    filter,
    description: nullable({ ...description }),
    enabled: {
      type: 'boolean',
      description: '`true` re-enables a disabled destination, from now on; `false` disables it.',
    },
    ...controls,
  },
});

const destinationProperties = {
  id: uuid(),
  type,
  config: { ...config, description: 'The config with credentials masked (`****`).' },
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

const destinationSecret = {
  ...secret,
  description: 'Signs each message (the `webhook-signature` header or field); shown on create and rotate only.',
};

export const DestinationSchema = named('Destination', {
  type: 'object',
  required: Object.keys(destinationProperties),
  properties: destinationProperties,
});

export const DestinationWithSecretSchema = named('DestinationWithSecret', {
  type: 'object',
  required: [...Object.keys(destinationProperties), 'secret'],
  properties: { ...destinationProperties, secret: destinationSecret },
});

export const DestinationRotatedSchema = named('DestinationRotated', {
  type: 'object',
  required: [...Object.keys(destinationProperties), 'secret', 'previous_secret_expires_at'],
  properties: {
    ...destinationProperties,
    secret: destinationSecret,
    previous_secret_expires_at: timestamp(
      'Until then messages carry a second signature with the previous secret (24 h).',
    ),
  },
});

export const DestinationListSchema = named('DestinationList', {
  type: 'object',
  required: ['destinations'],
  properties: {
    destinations: { type: 'array', items: DestinationSchema, description: 'Oldest first, without secrets.' },
  },
});

const destinationId: Record<string, ParameterDoc> = {
  id: { description: 'A destination id (malformed, unknown or a webhook endpoint: 404).', schema: uuid() },
};
const notFound = "`not_found`: no such destination in the caller's org.";
const invalid =
  '`validation_failed`: bad or unknown fields, a host not in DESTINATION_ALLOWED_HOSTS; `details` names each (`config.<field>`).';

export const CREATE_DESTINATION_DOC: RouteDoc = {
  operationId: 'createDestination',
  summary: 'Register a broker destination',
  description:
    "Events received from now on that match `event_types` and `filter` are published to the broker, at least once, with the Standard Webhooks values as message headers (stream fields for Redis). A delivery succeeds only on the broker's confirm.",
  tag: 'Destinations',
  requestBody: { schema: DestinationCreateSchema },
  responses: {
    201: { description: 'Registered; shows the signing secret once.', schema: DestinationWithSecretSchema },
  },
  errors: {
    409: '`conflict`: the org already has `WEBHOOK_MAX_ENDPOINTS_PER_ORG` endpoints (webhooks and destinations together).',
    422: invalid,
  },
};

export const LIST_DESTINATIONS_DOC: RouteDoc = {
  operationId: 'listDestinations',
  summary: 'List broker destinations',
  tag: 'Destinations',
  responses: { 200: { description: 'Every destination of the org.', schema: DestinationListSchema } },
};

export const GET_DESTINATION_DOC: RouteDoc = {
  operationId: 'getDestination',
  summary: 'Get a broker destination',
  tag: 'Destinations',
  pathParameters: destinationId,
  responses: { 200: { description: 'The destination, credentials masked.', schema: DestinationSchema } },
  errors: { 404: notFound },
};

export const UPDATE_DESTINATION_DOC: RouteDoc = {
  operationId: 'updateDestination',
  summary: 'Change a broker destination',
  tag: 'Destinations',
  pathParameters: destinationId,
  requestBody: { schema: DestinationUpdateSchema },
  responses: { 200: { description: 'The destination as changed.', schema: DestinationSchema } },
  errors: { 404: notFound, 422: `${invalid} \`type\` cannot change.` },
};

export const DELETE_DESTINATION_DOC: RouteDoc = {
  operationId: 'deleteDestination',
  summary: 'Delete a broker destination',
  description: 'Its pending deliveries and history go with it.',
  tag: 'Destinations',
  pathParameters: destinationId,
  responses: { 204: { description: 'Deleted.' } },
  errors: { 404: notFound },
};

export const ROTATE_DESTINATION_SECRET_DOC: RouteDoc = {
  operationId: 'rotateDestinationSecret',
  summary: "Rotate a destination's signing secret",
  description:
    'As for webhooks: every message published after the answer carries the new signature; for 24 h a second signature with the previous secret too.',
  tag: 'Destinations',
  pathParameters: destinationId,
  requestBody: { schema: { type: 'object', additionalProperties: true, description: 'Ignored; may be omitted.' } },
  responses: { 200: { description: 'The destination with its new secret.', schema: DestinationRotatedSchema } },
  errors: { 404: notFound },
};

export const LIST_DESTINATION_DELIVERIES_DOC: RouteDoc = {
  operationId: 'listDestinationDeliveries',
  summary: "List a destination's deliveries",
  description:
    'Newest first, each with its attempts (`response_status` is null for brokers; `error` says why a publish failed: broker down, refused, unroutable, no stream).',
  tag: 'Destinations',
  pathParameters: destinationId,
  query: DELIVERIES_QUERY,
  responses: { 200: { description: 'One page of deliveries.', schema: DeliveryPageSchema } },
  errors: {
    404: notFound,
    422: '`validation_failed`: a bad `status`, `limit`, `cursor` or `event_id`; `details` names each.',
  },
};

export const DESTINATION_STATS_DOC: RouteDoc = {
  operationId: 'getDestinationStats',
  summary: "A destination's delivery stats by minute",
  description: STATS_DESCRIPTION + ' As for webhooks.',
  tag: 'Destinations',
  pathParameters: destinationId,
  query: statsQuery,
  responses: { 200: { description: 'The window, minute by minute.', schema: EndpointStatsSchema } },
  errors: { 404: notFound, 422: '`validation_failed`: `window` is not one of `15m`, `1h`, `6h`, `24h`.' },
};

export const RECOVER_DESTINATION_DOC: RouteDoc = {
  operationId: 'recoverDestinationDeliveries',
  summary: 'Re-publish failed and dead deliveries',
  description:
    'Every failed and dead delivery created at or after `since` is published again now, with a fresh run of the retry schedule (once the destination is enabled).',
  tag: 'Destinations',
  pathParameters: destinationId,
  requestBody: { schema: RecoverRequestSchema },
  responses: { 202: { description: 'Queued.', schema: RecoverResultSchema } },
  errors: {
    404: notFound,
    422: '`validation_failed`: `since` is missing or not RFC 3339 with a time zone, or unknown fields.',
  },
};
