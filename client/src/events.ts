import type { TriggersClient } from './client.js';
import { orThrow } from './errors.js';
import { retrying, type RetryOptions } from './retry.js';
import type { paths } from './schema.js';

export type EventInput = paths['/v1/events']['post']['requestBody']['content']['application/json'];
export type BatchResponse = paths['/v1/events/batch']['post']['responses'][200]['content']['application/json'];

/** The most events one `POST /v1/events/batch` takes (API.md §3). */
export const MAX_BATCH_EVENTS = 1000;

/**
 * Sends up to 1000 events in one `POST /v1/events/batch`, waiting out 429 and 503 (nothing was
 * stored then, so resending is safe). Items are accepted, duplicate or rejected one by one: read
 * `results`. `retry: false` throws 429 and 503 instead.
 */
export async function sendBatch(
  client: TriggersClient,
  events: EventInput[],
  retry: RetryOptions | false = {},
): Promise<BatchResponse> {
  if (events.length === 0 || events.length > MAX_BATCH_EVENTS)
    throw new RangeError(`a batch holds 1 to ${MAX_BATCH_EVENTS} events, got ${events.length}`);
  const send = async () => orThrow(await client.POST('/v1/events/batch', { body: { events } }));
  return retry === false ? send() : retrying(send, retry);
}
