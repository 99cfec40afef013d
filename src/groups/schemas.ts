import { FILTER_RE, MAX_EVENT_TYPES } from '../delivery/event-types.js';
import { filterSchema } from '../filter/schema.js';
import { InboxEventSchema } from '../ingest/schemas.js';
import type { ParameterDoc, RouteDoc } from '../openapi/operation.js';
import { count, named, nullable, timestamp } from '../openapi/schema.js';
import {
  DEFAULT_MAX_DELIVERIES,
  DEFAULT_RECEIVE_MAX,
  DEFAULT_VISIBILITY_TIMEOUT_S,
  GROUP_NAME_RE,
  MAX_DELAY_S,
  MAX_GROUP_IDS,
  MAX_MAX_DELIVERIES,
  MAX_RECEIVE,
  MAX_VISIBILITY_TIMEOUT_S,
  MAX_WAIT_S,
} from './params.js';
import { MAX_GROUPS_PER_ORG } from './store.js';

/** Consumer groups (API.md §4b, docs/CONSUMER-GROUPS.md) as the OpenAPI document shows them. */

const TAG = 'Consumer groups' as const;

const name = { type: 'string', pattern: GROUP_NAME_RE.source, description: 'Unique in the org.' };
const eventTypes = {
  type: 'array',
  maxItems: MAX_EVENT_TYPES,
  items: { type: 'string', pattern: FILTER_RE.source },
  description: 'Exact types (`order.paid`) or prefixes ending in `*` (`user.*`). Empty: every type.',
};
const filter = filterSchema('handed out');
const visibility = {
  type: 'integer',
  minimum: 1,
  maximum: MAX_VISIBILITY_TIMEOUT_S,
  description: 'Seconds a received event stays leased to its consumer.',
};
const maxDeliveries = {
  type: 'integer',
  minimum: 1,
  maximum: MAX_MAX_DELIVERIES,
  description: 'Deliveries without an ack after which an event is dead.',
};

const ids = (description: string) => ({
  type: 'array',
  minItems: 1,
  maxItems: MAX_GROUP_IDS,
  items: { type: 'string', minLength: 1, maxLength: 64 },
  description,
});
const notFoundIds = (description: string) => ({ type: 'array', items: { type: 'string' }, description });

export const ConsumerGroupSchema = named('ConsumerGroup', {
  type: 'object',
  required: [
    'name',
    'start',
    'event_types',
    'filter',
    'visibility_timeout_s',
    'max_deliveries',
    'created_at',
    'pending',
    'leased',
    'dead',
    'oldest_pending_at',
  ],
  properties: {
    name,
    start: { type: 'string', enum: ['latest', 'earliest'] },
    event_types: eventTypes,
    filter,
    visibility_timeout_s: visibility,
    max_deliveries: maxDeliveries,
    created_at: timestamp(),
    pending: count(
      'Events the group will still hand out (neither acked nor dead), leased ones included. With a `filter`, events not yet handed out are counted before the filter is applied to them.',
    ),
    leased: count('Of those, the ones under a lease now.'),
    dead: count('Dead events (see `GET …/dead`).'),
    oldest_pending_at: nullable({ ...timestamp('received_at of the oldest pending event.') }),
  },
});

export const ConsumerGroupCreateSchema = named('ConsumerGroupCreate', {
  type: 'object',
  required: ['name'],
  additionalProperties: false,
  properties: {
    name,
    start: {
      type: 'string',
      enum: ['latest', 'earliest'],
      default: 'latest',
      description: '`latest`: events committed after the group was created; `earliest`: every retained event.',
    },
    event_types: eventTypes,
    filter,
    visibility_timeout_s: { ...visibility, default: DEFAULT_VISIBILITY_TIMEOUT_S },
    max_deliveries: { ...maxDeliveries, default: DEFAULT_MAX_DELIVERIES },
  },
  examples: [
    { name: 'billing', start: 'earliest', event_types: ['order.*'], filter: { 'payload.amount': { $gte: 100 } } },
  ],
});

export const ConsumerGroupPatchSchema = named('ConsumerGroupPatch', {
  type: 'object',
  additionalProperties: false,
  properties: { event_types: eventTypes, filter, visibility_timeout_s: visibility, max_deliveries: maxDeliveries },
});

const MessageSchema = named('ConsumerGroupMessage', {
  type: 'object',
  required: ['event', 'delivery_count', 'lease_expires_at'],
  properties: {
    event: InboxEventSchema,
    delivery_count: {
      type: 'integer',
      minimum: 1,
      description: "This delivery's number: 1 the first time, +1 each time a lease expired or a nack returned it.",
    },
    lease_expires_at: timestamp('Until then no other receive of the group gets this event.'),
  },
});

const groupPath: Record<string, ParameterDoc> = {
  name: { description: "The group's name.", schema: name, required: true },
};
const unknownGroup = "`not_found`: no group of that name in the caller's org.";

export const CREATE_GROUP_DOC: RouteDoc = {
  operationId: 'createConsumerGroup',
  summary: 'Create a consumer group',
  tag: TAG,
  description: `A named, durable position in the org's event stream. At most ${MAX_GROUPS_PER_ORG} groups per org.`,
  requestBody: { schema: ConsumerGroupCreateSchema },
  responses: { 201: { description: 'The group.', schema: ConsumerGroupSchema } },
  errors: {
    409: '`conflict`: the name is taken, or the org has the most groups allowed.',
    422: '`validation_failed`: a bad field; `details` names each (`filter` for a bad filter).',
  },
};

export const LIST_GROUPS_DOC: RouteDoc = {
  operationId: 'listConsumerGroups',
  summary: 'List consumer groups',
  tag: TAG,
  responses: {
    200: {
      description: 'Every group of the org, by name.',
      schema: {
        type: 'object',
        required: ['groups'],
        properties: { groups: { type: 'array', items: ConsumerGroupSchema } },
      },
    },
  },
};

export const GET_GROUP_DOC: RouteDoc = {
  operationId: 'getConsumerGroup',
  summary: 'Get a consumer group with its counts',
  tag: TAG,
  pathParameters: groupPath,
  responses: { 200: { description: 'The group.', schema: ConsumerGroupSchema } },
  errors: { 404: unknownGroup },
};

export const PATCH_GROUP_DOC: RouteDoc = {
  operationId: 'updateConsumerGroup',
  summary: 'Change a consumer group',
  tag: TAG,
  pathParameters: groupPath,
  description: 'Only the fields given change. `event_types` and `filter` apply to events not yet handed out.',
  requestBody: { schema: ConsumerGroupPatchSchema },
  responses: { 200: { description: 'The group.', schema: ConsumerGroupSchema } },
  errors: { 404: unknownGroup, 422: '`validation_failed`: a bad field; `details` names each.' },
};

export const DELETE_GROUP_DOC: RouteDoc = {
  operationId: 'deleteConsumerGroup',
  summary: 'Delete a consumer group',
  tag: TAG,
  pathParameters: groupPath,
  description: 'Its position, leases and dead letters go; events stay.',
  responses: { 204: { description: 'Deleted.' } },
  errors: { 404: unknownGroup },
};

export const RECEIVE_DOC: RouteDoc = {
  operationId: 'receiveFromConsumerGroup',
  summary: 'Receive events under a lease',
  tag: TAG,
  pathParameters: groupPath,
  description:
    'Oldest first (by inbox order; a redelivered event may come after newer ones). Each event is leased to this caller until `lease_expires_at`; unacked, it comes back with `delivery_count` + 1, and after `max_deliveries` it is dead. With `wait_s`, an empty group waits up to that long for an event and answers as soon as one arrives. The payloads of one answer add up to about 8 MiB at most (at least one event).',
  requestBody: {
    schema: {
      type: 'object',
      additionalProperties: false,
      properties: {
        max: { type: 'integer', minimum: 1, maximum: MAX_RECEIVE, default: DEFAULT_RECEIVE_MAX },
        visibility_timeout_s: { ...visibility, description: "This receive's lease; the group's when absent." },
        wait_s: {
          type: 'integer',
          minimum: 0,
          maximum: MAX_WAIT_S,
          default: 0,
          description: 'Long poll: seconds to wait for an event when there is none.',
        },
      },
    },
  },
  responses: {
    200: {
      description: 'The messages (possibly none).',
      schema: {
        type: 'object',
        required: ['messages'],
        properties: { messages: { type: 'array', items: MessageSchema } },
      },
    },
  },
  errors: {
    404: unknownGroup,
    422: '`validation_failed`: a bad field.',
    429: "`rate_limited`: over the org's rate, or too many long-poll receives of the org are waiting in this server process already (GROUP_WAIT_PER_ORG); retry after `Retry-After`.",
  },
};

const settleResult = (field: string, description: string) => ({
  type: 'object',
  required: [field, 'not_found'],
  properties: {
    [field]: count(description),
    not_found: notFoundIds("Ids that are unknown, another org's, gone, or not in the state the operation needs."),
  },
});

export const ACK_GROUP_DOC: RouteDoc = {
  operationId: 'ackConsumerGroup',
  summary: 'Acknowledge events for the group',
  tag: TAG,
  pathParameters: groupPath,
  description:
    'Done for this group, never returned again. Idempotent; any consumer of the group may ack, also after its lease expired. An event the group has not handed out yet is `not_found`.',
  requestBody: {
    schema: {
      type: 'object',
      required: ['ids'],
      additionalProperties: false,
      properties: { ids: ids('Event ids; duplicates are folded.') },
    },
  },
  responses: {
    200: {
      description: 'How many are acked.',
      schema: settleResult('acked', 'Events now acked for the group, including ones acked before.'),
    },
  },
  errors: { 404: unknownGroup, 422: '`validation_failed`: the body is not `{"ids": [...]}` with 1-1000 ids.' },
};

export const NACK_DOC: RouteDoc = {
  operationId: 'nackConsumerGroup',
  summary: 'Return events to the group',
  tag: TAG,
  pathParameters: groupPath,
  description:
    'Back to the group now, or after `delay_s`, with their delivery count kept. Dead, acked or never handed out: `not_found`.',
  requestBody: {
    schema: {
      type: 'object',
      required: ['ids'],
      additionalProperties: false,
      properties: {
        ids: ids('Event ids.'),
        delay_s: { type: 'integer', minimum: 0, maximum: MAX_DELAY_S, default: 0 },
      },
    },
  },
  responses: {
    200: { description: 'How many were returned.', schema: settleResult('nacked', 'Events returned to the group.') },
  },
  errors: { 404: unknownGroup, 422: '`validation_failed`: a bad field.' },
};

export const EXTEND_DOC: RouteDoc = {
  operationId: 'extendConsumerGroupLeases',
  summary: 'Extend leases',
  tag: TAG,
  pathParameters: groupPath,
  description: 'Each lease now ends `visibility_timeout_s` from now. An id not under a lease is `not_found`.',
  requestBody: {
    schema: {
      type: 'object',
      required: ['ids', 'visibility_timeout_s'],
      additionalProperties: false,
      properties: { ids: ids('Event ids.'), visibility_timeout_s: visibility },
    },
  },
  responses: {
    200: { description: 'How many leases were extended.', schema: settleResult('extended', 'Leases extended.') },
  },
  errors: { 404: unknownGroup, 422: '`validation_failed`: a bad field.' },
};

export const DEAD_DOC: RouteDoc = {
  operationId: 'listConsumerGroupDead',
  summary: 'List dead events',
  tag: TAG,
  pathParameters: groupPath,
  description: 'Events delivered `max_deliveries` times without an ack, in inbox order, 100 a page.',
  query: { cursor: { description: 'A `next_cursor` from the page before.', schema: { type: 'string' } } },
  responses: {
    200: {
      description: 'One page.',
      schema: {
        type: 'object',
        required: ['dead', 'next_cursor'],
        properties: {
          dead: {
            type: 'array',
            items: {
              type: 'object',
              required: ['event', 'delivery_count'],
              properties: { event: InboxEventSchema, delivery_count: { type: 'integer', minimum: 0 } },
            },
          },
          next_cursor: nullable({ type: 'string', description: 'null on the last page.' }),
        },
      },
    },
  },
  errors: { 404: unknownGroup, 422: '`validation_failed`: a bad cursor or an unknown parameter.' },
};

export const REDRIVE_DOC: RouteDoc = {
  operationId: 'redriveConsumerGroup',
  summary: 'Return dead events to the group',
  tag: TAG,
  pathParameters: groupPath,
  description: 'The named dead events (all when `ids` is absent) return to the group with `delivery_count` 0.',
  requestBody: {
    schema: { type: 'object', additionalProperties: false, properties: { ids: ids('Dead event ids; absent: all.') } },
  },
  responses: {
    200: {
      description: 'How many returned.',
      schema: {
        type: 'object',
        required: ['redriven'],
        properties: { redriven: count('Events returned to the group.') },
      },
    },
  },
  errors: { 404: unknownGroup, 422: '`validation_failed`: a bad field.' },
};

export const SEEK_DOC: RouteDoc = {
  operationId: 'seekConsumerGroup',
  summary: 'Move the group to a point in the stream',
  tag: TAG,
  pathParameters: groupPath,
  description:
    'From now on the group hands out events from that point on, in inbox order (a time means `received_at` at or after it); acks, leases and dead marks at or after the point are forgotten, and everything before it counts as acked.',
  requestBody: {
    schema: {
      type: 'object',
      required: ['to'],
      additionalProperties: false,
      properties: {
        to: {
          type: 'string',
          description: '`earliest`, `latest` or an RFC 3339 time.',
          examples: ['earliest', '2026-01-01T00:00:00Z'],
        },
      },
    },
  },
  responses: { 200: { description: 'The group.', schema: ConsumerGroupSchema } },
  errors: { 404: unknownGroup, 422: '`validation_failed`: `to` is not earliest, latest or a time.' },
};
