import assert from 'node:assert/strict';
import type { Receiver, ReceivedWebhook } from '../webhooks-receiver.js';
import { call } from './api.js';
import { webhookId } from './webhook-kit.js';

/** What the ordering "key" tests send and check (API.md §5 `ordering: "key"`). */

/** Events `{type, payload: {i}, ordering_key}` in one batch (null: no key); their ids in order. */
export async function sendKeyed(at: string, key: string, keys: (string | null)[], from = 0): Promise<string[]> {
  const events = keys.map((orderingKey, i) => ({
    type: 'keyed.event',
    payload: { i: from + i },
    ...(orderingKey === null ? {} : { ordering_key: orderingKey }),
  }));
  const response = await call(at, 'POST', '/v1/events/batch', { key, body: { events } });
  assert.equal(response.status, 200, response.text);
  assert.equal(response.body.accepted, keys.length, response.text);
  return response.body.results.map((result: any) => result.id);
}

/**
 * Per-key order as the receiver saw it: for each key's events (in inbox order), the first request
 * of each comes after a request of the one before it that was answered 2xx (`succeeded(request)`),
 * or after the last request of the one before it if that one went dead (`dead` ids). Duplicates (a re-send after a crash) are
 * allowed. Returns the violations, empty when the order held.
 */
export function keyOrderViolations(
  hook: Receiver,
  byKey: Map<string, string[]>,
  succeeded: (request: ReceivedWebhook) => boolean,
  dead: ReadonlySet<string> = new Set(),
): string[] {
  const firstAt = new Map<string, number>();
  const successAt = new Map<string, number>();
  const lastAt = new Map<string, number>();
  hook.requests.forEach((request, index) => {
    const id = webhookId(request);
    if (!firstAt.has(id)) firstAt.set(id, index);
    lastAt.set(id, index);
    if (!successAt.has(id) && succeeded(request)) successAt.set(id, index);
  });
  const violations: string[] = [];
  for (const [key, ids] of byKey) {
    for (let k = 1; k < ids.length; k++) {
      const previous = ids[k - 1]!;
      const first = firstAt.get(ids[k]!);
      if (first === undefined) continue;
      const previousDone = dead.has(previous)
        ? (lastAt.get(previous) ?? Infinity)
        : (successAt.get(previous) ?? Infinity);
      if (first <= previousDone)
        violations.push(
          `key ${key}: event ${k} (request ${first}) before event ${k - 1} succeeded or died (request ${previousDone})`,
        );
    }
  }
  return violations;
}
