export { createTriggersClient, type TriggersClient, type TriggersClientOptions } from './client.js';
export { TriggersApiError, orThrow } from './errors.js';
export { inboxPages, type InboxEvent, type InboxPage, type InboxQuery } from './inbox.js';
export { retrying, type RetryOptions } from './retry.js';
export type { components, operations, paths } from './schema.js';
export { MAX_BATCH_EVENTS, sendBatch, type BatchResponse, type EventInput } from './events.js';

/** The JSON body of a webhook delivery (API.md §5); verify its signature before trusting it. */
export interface WebhookEvent {
  id: string;
  type: string;
  payload: Record<string, unknown>;
  occurred_at: string;
  received_at: string;
}
