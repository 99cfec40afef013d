export { createTriggersClient, type TriggersClient, type TriggersClientOptions } from './client.js';
export { TriggersApiError, orThrow } from './errors.js';
export { MAX_BATCH_EVENTS, sendBatch, type BatchResponse, type EventInput } from './events.js';
export { runGroupWorker, type GroupMessage, type GroupWorkerOptions, type GroupWorkerTotals } from './group-worker.js';
export { inboxPages, type InboxEvent, type InboxPage, type InboxQuery } from './inbox.js';
export { retrying, type RetryOptions } from './retry.js';
export type { components, operations, paths } from './schema.js';
export type { Destination, EventType, Schemas, WebhookEvent } from './types.js';
