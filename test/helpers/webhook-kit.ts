import assert from 'node:assert/strict';
import { Receiver, waitFor, type Behaviour, type ReceivedWebhook } from '../webhooks-receiver.js';
import { call } from './api.js';

/**
 * What the webhook stream tests do over and over, against `base()` unless told another node:
 * receivers (closed by `closeReceivers`), endpoints, events, and the deliveries the API lists.
 */
export function webhookKit(base: () => string) {
  const receivers: Receiver[] = [];

  async function receiver(behaviour?: Behaviour): Promise<Receiver> {
    const started = await Receiver.start(behaviour);
    receivers.push(started);
    return started;
  }

  /**
   * A receiver that holds each request `delayMs` (> 0) before answering, and counts the requests it
   * holds at once. A request is open here from its arrival to its answer, a part of the time the
   * sender has it in flight, so `max` never overstates the sender's concurrency.
   */
  async function countingReceiver(answer: (request: ReceivedWebhook) => number, delayMs: number) {
    const stats = { open: 0, max: 0 };
    const hook = await receiver((_n, request) => {
      stats.open++;
      stats.max = Math.max(stats.max, stats.open);
      // Scheduled before the receiver's own reply timer with the same delay, so it runs first.
      setTimeout(() => {
        stats.open--;
      }, delayMs);
      return { status: answer(request), delayMs };
    });
    return { hook, stats };
  }

  async function createWebhook(key: string, body: Record<string, unknown>, at = base()) {
    const response = await call(at, 'POST', '/v1/webhooks', { key, body });
    assert.equal(response.status, 201, response.text);
    return response.body;
  }

  async function send(key: string, at = base()): Promise<{ id: string; acceptedAt: number }> {
    const response = await call(at, 'POST', '/v1/events', {
      key,
      body: { type: 'single.event', payload: { at: Date.now() } },
    });
    assert.equal(response.status, 202, response.text);
    return { id: response.body.id, acceptedAt: Date.now() };
  }

  async function sendBatch(key: string, count: number, type = 'batch.event', at = base()): Promise<string[]> {
    const events = Array.from({ length: count }, (_, i) => ({ type, payload: { i } }));
    const response = await call(at, 'POST', '/v1/events/batch', { key, body: { events } });
    assert.equal(response.status, 200, response.text);
    assert.equal(response.body.accepted, count, response.text);
    return response.body.results.map((result: any) => result.id);
  }

  /** Every delivery of an endpoint (all pages). */
  async function allDeliveries(endpointId: string, key: string, at = base()): Promise<any[]> {
    const deliveries: any[] = [];
    let cursor = '';
    for (;;) {
      const page = await call(
        at,
        'GET',
        `/v1/webhooks/${endpointId}/deliveries?limit=250${cursor ? `&cursor=${cursor}` : ''}`,
        { key },
      );
      assert.equal(page.status, 200, page.text);
      deliveries.push(...page.body.deliveries);
      if (!page.body.next_cursor) return deliveries;
      cursor = page.body.next_cursor;
    }
  }

  /**
   * The deliveries once every one of `eventIds` has reached a final status. An answer arrives at the
   * receiver before its attempt is recorded (the progress writer commits in groups just after).
   */
  async function settledDeliveries(endpointId: string, key: string, eventIds: string[], at = base()): Promise<any[]> {
    let deliveries: any[] = [];
    await waitFor(
      'every delivery recorded with its final status',
      async () => {
        deliveries = await allDeliveries(endpointId, key, at);
        const status = new Map(deliveries.map((delivery) => [delivery.event_id, delivery.status]));
        return eventIds.every((id) => status.get(id) === 'succeeded' || status.get(id) === 'dead');
      },
      10_000,
      50,
    );
    return deliveries;
  }

  return {
    receiver,
    countingReceiver,
    createWebhook,
    send,
    sendBatch,
    allDeliveries,
    settledDeliveries,
    async closeReceivers() {
      for (const open of receivers.splice(0)) await open.close();
    },
  };
}

export const webhookId = (request: ReceivedWebhook) => String(request.headers['webhook-id']);
/** Each event id a receiver got, with how many times. */
export function deliveryCounts(hook: Receiver): Map<string, number> {
  const seen = new Map<string, number>();
  for (const request of hook.requests) {
    const id = webhookId(request);
    seen.set(id, (seen.get(id) ?? 0) + 1);
  }
  return seen;
}

/** The receiver got every one of `expected` once, and nothing else. */
export function assertExactlyOnce(hook: Receiver, expected: string[], what: string): void {
  const seen = deliveryCounts(hook);
  const missing = expected.filter((id) => !seen.has(id));
  assert.deepEqual(missing, [], `${what}: ${missing.length} of ${expected.length} events never delivered`);
  const twice = [...seen].filter(([, n]) => n > 1).map(([id]) => id);
  assert.deepEqual(twice, [], `${what}: delivered more than once`);
  const unexpected = [...seen.keys()].filter((id) => !expected.includes(id));
  assert.deepEqual(unexpected, [], `${what}: delivered but not expected`);
}

export const payloadIndex = (request: ReceivedWebhook) =>
  (JSON.parse(request.body) as { payload: { i: number } }).payload.i;

/** The most timestamps (ms) that fall in any one window [t, t + windowMs). */
export function maxInWindow(times: number[], windowMs: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let most = 0;
  let start = 0;
  for (let end = 0; end < sorted.length; end++) {
    while (sorted[end]! - sorted[start]! >= windowMs) start++;
    most = Math.max(most, end - start + 1);
  }
  return most;
}
