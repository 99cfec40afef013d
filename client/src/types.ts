import type { components } from './schema.js';

/** Every named schema of the OpenAPI document: `Schemas['Webhook']`, `Schemas['InboxEvent']`, … */
export type Schemas = components['schemas'];

/**
 * The JSON body of a webhook delivery (API.md §5): an inbox event without `dedup_id`, with
 * `schema_version` when the event's type had a registered schema (API.md §3b). Verify the
 * request's signature (Standard Webhooks) before trusting it.
 */
export type WebhookEvent = Pick<
  Schemas['InboxEvent'],
  'id' | 'type' | 'payload' | 'occurred_at' | 'received_at' | 'schema_version'
>;

/** A registered event type and its schema: `client.PUT('/v1/event-types/{type}', …)`. */
export type EventType = Schemas['EventType'];

/** A broker destination (API.md §5b) as every answer shows it: credentials in `config` masked as `****`. */
export type Destination = Schemas['Destination'];
