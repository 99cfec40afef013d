import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { call, createOrgWithKey } from './helpers/api.js';
import { keyOrderViolations, sendKeyed } from './helpers/key-order.js';
import { TestPostgres } from './helpers/postgres.js';
import { TestServer } from './helpers/server.js';
import { webhookKit, webhookId } from './helpers/webhook-kit.js';
import { waitFor, type ReceivedWebhook } from './webhooks-receiver.js';

/**
 * `ordering: "key"` (API.md §5), black-box against the real server and a real receiver: events
 * with the same ordering_key in inbox order, each after the one before it succeeded or is dead;
 * other keys and events without a key are not held. The restart and the two delivery processes
 * are in webhooks-keys-faults.test.ts (extended set); the stream's holding itself is unit-tested
 * in unit-stream.test.ts.
 */

// Retries spread over ~12 s before a delivery is dead: long enough for the rest of the batch to
// be delivered while the failing event waits, on a loaded machine too.
const LOCAL = {
  WEBHOOK_ALLOW_HTTP: 'true',
  WEBHOOK_ALLOW_PRIVATE: 'true',
  WEBHOOK_TIMEOUT_MS: '10000',
  WEBHOOK_RETRY_SCHEDULE: '300ms,500ms,1s,1s,2s,2s,5s',
};

let pg: TestPostgres;
let server: TestServer;
let base: string;
/** Two quick retries: a failing delivery is dead within a second. */
let quick: TestServer;
const { receiver, createWebhook, settledDeliveries, closeReceivers } = webhookKit(() => base);

before(async () => {
  pg = await TestPostgres.shared();
  const [mainDb, quickDb] = await Promise.all([pg.createDatabase('keys'), pg.createDatabase('keys_quick')]);
  [server, quick] = await Promise.all([
    TestServer.start({ databaseUrl: mainDb, workers: 1, env: LOCAL }),
    TestServer.start({ databaseUrl: quickDb, workers: 1, env: { ...LOCAL, WEBHOOK_RETRY_SCHEDULE: '100ms,100ms' } }),
  ]);
  base = server.url;
});

after(async () => {
  await Promise.all([server?.stop(), quick?.stop()]);
  await closeReceivers();
  await pg?.stop();
});

const index = (request: ReceivedWebhook) => (JSON.parse(request.body) as { payload: { i: number } }).payload.i;

test('ordering "key" is set on create and PATCH and shown by GET; other values are 422 naming the field', async () => {
  const { key } = await createOrgWithKey(base);
  const created = await createWebhook(key, { url: 'http://127.0.0.1:9/keyed', ordering: 'key' });
  assert.equal(created.ordering, 'key');
  const got = await call(base, 'GET', `/v1/webhooks/${created.id}`, { key });
  assert.equal(got.body.ordering, 'key');
  for (const ordering of ['none', 'fifo', 'key']) {
    const patched = await call(base, 'PATCH', `/v1/webhooks/${created.id}`, { key, body: { ordering } });
    assert.equal(patched.status, 200, patched.text);
    assert.equal(patched.body.ordering, ordering);
    assert.equal((await call(base, 'GET', `/v1/webhooks/${created.id}`, { key })).body.ordering, ordering);
  }
  for (const ordering of ['KEY', 'keys', 'ordering_key', '', null]) {
    const response = await call(base, 'POST', '/v1/webhooks', {
      key,
      body: { url: 'http://127.0.0.1:9/bad', ordering },
    });
    assert.equal(response.status, 422, response.text);
    assert.deepEqual(
      response.body.error.details.map((detail: any) => detail.field),
      ['ordering'],
    );
  }
});

test('ordering "key": a failing event holds only the later events of its key; other keys and events without a key are delivered meanwhile', async () => {
  const { key } = await createOrgWithKey(base);
  // Key "a": 0, 3, 6, …; key "b": 1, 4, 7, …; no key: 2, 5, 8, …. Event 0 (a's first) fails
  // until every b and keyless event has arrived: if any of them were held behind it, it would
  // fail until dead.
  const keys = Array.from({ length: 30 }, (_, i) => (i % 3 === 0 ? 'a' : i % 3 === 1 ? 'b' : null));
  const others = new Set(keys.flatMap((k, i) => (k === 'a' ? [] : [i])));
  const status = new Map<ReceivedWebhook, number>();
  let warmed = false;
  const hook = await receiver((_n, request) => {
    const i = index(request);
    let answer = 200;
    if (i === 0 && warmed) {
      const arrived = new Set(hook.requests.map(index));
      answer = [...others].every((other) => arrived.has(other)) ? 200 : 500;
    }
    status.set(request, answer);
    return { status: answer, delayMs: 5 };
  });
  const endpoint = await createWebhook(key, { url: hook.url, ordering: 'key' });
  // A first success, so the endpoint is known to answer (one that never answered is probed, one request at a time).
  const [warmup] = await sendKeyed(base, key, [null], -1);
  await waitFor('the warm-up event', () => hook.ids().has(warmup!), 15_000);
  warmed = true;
  const ids = await sendKeyed(base, key, keys);
  await waitFor('every event delivered', () => ids.every((id) => hook.ids().has(id)), 30_000);
  const deliveries = await settledDeliveries(endpoint.id, key, ids);
  const first = deliveries.find((delivery) => delivery.event_id === ids[0])!;
  assert.equal(first.status, 'succeeded', 'the failing event succeeded: nothing else waited behind it');
  const codes = first.attempts.map((attempt: any) => attempt.response_status);
  assert.ok(
    codes.length >= 2 && codes[0] === 500 && codes.at(-1) === 200,
    `it failed, then succeeded: ${codes.join(' ')}`,
  );

  const requests = hook.requests.filter((request) => webhookId(request) !== warmup);
  const firstFailure = requests.findIndex((request) => index(request) === 0);
  const success = requests.findIndex((request) => index(request) === 0 && status.get(request) === 200);
  const aFollowers = requests
    .map((request, at) => [index(request), at] as const)
    .filter(([i]) => i !== 0 && keys[i] === 'a');
  for (const [i, at] of aFollowers)
    assert.ok(at > success, `a's event ${i} was sent (request ${at}) before a's first succeeded (request ${success})`);
  const meanwhile = requests.slice(firstFailure + 1, success).map(index);
  assert.ok(
    meanwhile.some((i) => keys[i] === 'b'),
    `b's events were delivered while a was held: ${meanwhile.join(' ')}`,
  );
  assert.ok(
    meanwhile.some((i) => keys[i] === null),
    `events without a key were delivered while a was held: ${meanwhile.join(' ')}`,
  );

  const byKey = new Map([
    ['a', ids.filter((_, i) => keys[i] === 'a')],
    ['b', ids.filter((_, i) => keys[i] === 'b')],
  ]);
  assert.deepEqual(
    keyOrderViolations(hook, byKey, (request) => status.get(request) === 200),
    [],
  );
  assert.equal(requests.length, ids.length + codes.length - 1, 'each event once, and the retries of the failing one');
});

test('ordering "key": an event that goes dead lets the later events of its key through', async () => {
  const at = quick.url;
  const { key } = await createOrgWithKey(at);
  const hook = await receiver((_n, request) => ({ status: index(request) === 1 ? 500 : 200 }));
  const endpoint = await createWebhook(key, { url: hook.url, ordering: 'key' }, at);
  // Dead after 1 + 2 attempts.
  const ids = await sendKeyed(at, key, ['k', 'k', 'k', 'k']);
  await waitFor('every event delivered', () => ids.every((id) => hook.ids().has(id)), 30_000, 50);
  const order = hook.requests.map(index);
  assert.deepEqual(order, [0, 1, 1, 1, 2, 3], 'the failing event is retried to death, then its key moves on');
  const deliveries = await settledDeliveries(endpoint.id, key, ids, at);
  const statusOf = new Map(deliveries.map((delivery) => [delivery.event_id, delivery.status]));
  assert.deepEqual(
    ids.map((id) => statusOf.get(id)),
    ['succeeded', 'dead', 'succeeded', 'succeeded'],
  );
});

test('ordering "key" set by PATCH on a running endpoint applies to the events after it', async () => {
  const at = quick.url;
  const { key } = await createOrgWithKey(at);
  const status = new Map<ReceivedWebhook, number>();
  let failed = false;
  const hook = await receiver((_n, request) => {
    const failNow = index(request) === 0 && !failed;
    if (failNow) failed = true;
    const answer = failNow ? 500 : 200;
    status.set(request, answer);
    return { status: answer, delayMs: 5 };
  });
  const endpoint = await createWebhook(key, { url: hook.url }, at);
  const [warmup] = await sendKeyed(at, key, [null], -1);
  await waitFor('the warm-up event', () => hook.ids().has(warmup!), 15_000);
  const patched = await call(at, 'PATCH', `/v1/webhooks/${endpoint.id}`, { key, body: { ordering: 'key' } });
  assert.equal(patched.status, 200, patched.text);
  // API.md §5: a change applies to deliveries that start more than 1 s after the answer.
  await new Promise((resolve) => setTimeout(resolve, 1_200));
  const keys = Array.from({ length: 12 }, (_, i) => (i % 2 === 0 ? 'p' : 'q'));
  const ids = await sendKeyed(at, key, keys);
  await waitFor('every event delivered', () => ids.every((id) => hook.ids().has(id)), 20_000);
  const byKey = new Map(['p', 'q'].map((k) => [k, ids.filter((_, i) => keys[i] === k)] as const));
  assert.deepEqual(
    keyOrderViolations(hook, byKey, (request) => status.get(request) === 200),
    [],
  );
  assert.ok(failed, 'the first event of p failed once');
});
