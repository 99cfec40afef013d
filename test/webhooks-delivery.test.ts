import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { call, createOrgWithKey } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { TestServer, freePort } from './helpers/server.js';
import { Receiver, expectedSignature, waitFor, type Behaviour } from './webhooks-receiver.js';

/** Retries, dead deliveries, recover, timeouts, disabling and isolation (two nodes and a SIGKILL: webhooks-delivery-faults.test.ts). */

let pg: TestPostgres;
let server: TestServer;
let base: string;
const receivers: Receiver[] = [];
const servers: TestServer[] = [];

const LOCAL = { WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOW_PRIVATE: 'true' };

before(async () => {
  pg = await TestPostgres.shared();
  server = await TestServer.start({
    databaseUrl: await pg.createDatabase('deliveries'),
    workers: 1,
    env: { ...LOCAL, WEBHOOK_RETRY_SCHEDULE: '200ms,200ms,200ms', WEBHOOK_TIMEOUT_MS: '1000' },
  });
  base = server.url;
});

after(async () => {
  for (const receiver of receivers) await receiver.close();
  for (const extra of servers) await extra.killAll();
  await server?.stop();
  await pg?.stop();
});

async function receiver(behaviour?: Behaviour): Promise<Receiver> {
  const started = await Receiver.start(behaviour);
  receivers.push(started);
  return started;
}

async function createWebhook(url: string, key: string, body: Record<string, unknown> = {}, at = base) {
  const response = await call(at, 'POST', '/v1/webhooks', { key, body: { url, ...body } });
  assert.equal(response.status, 201, response.text);
  return response.body;
}

async function send(key: string, type = 'test.event', at = base): Promise<string> {
  const response = await call(at, 'POST', '/v1/events', { key, body: { type, payload: { at: Date.now() } } });
  assert.equal(response.status, 202, response.text);
  return response.body.id;
}

async function sendBatch(key: string, count: number, at = base): Promise<string[]> {
  const events = Array.from({ length: count }, (_, i) => ({ type: 'batch.event', payload: { i } }));
  const response = await call(at, 'POST', '/v1/events/batch', { key, body: { events } });
  assert.equal(response.status, 200, response.text);
  assert.equal(response.body.accepted, count);
  return response.body.results.map((r: any) => r.id);
}

async function deliveryOf(endpointId: string, key: string, at = base): Promise<any> {
  const page = await call(at, 'GET', `/v1/webhooks/${endpointId}/deliveries`, { key });
  assert.equal(page.status, 200, page.text);
  return page.body.deliveries[0];
}

test('a delivery that fails twice is retried on the schedule and then succeeds', async () => {
  const { key } = await createOrgWithKey(base);
  const hook = await receiver((n) => ({ status: n < 2 ? 500 : 204 }));
  const endpoint = await createWebhook(hook.url, key);
  const id = await send(key);
  const delivery = await waitFor('success after two failures', async () => {
    const d = await deliveryOf(endpoint.id, key);
    return d?.status === 'succeeded' ? d : null;
  });
  assert.equal(hook.requests.length, 3);
  assert.ok(
    hook.requests.every((r) => r.headers['webhook-id'] === id),
    'every attempt carries the same webhook-id',
  );
  assert.deepEqual(
    delivery.attempts.map((a: any) => a.response_status),
    [500, 500, 204],
  );
  assert.equal(delivery.attempts[0].error === null || typeof delivery.attempts[0].error === 'string', true);
  assert.ok(delivery.attempts[0].next_attempt_at, 'a failed attempt records when the next one is due');
  assert.equal(delivery.next_attempt_at, null);
  // Each attempt is signed afresh with its own timestamp.
  for (const request of hook.requests) {
    assert.equal(
      request.headers['webhook-signature'],
      expectedSignature(endpoint.secret, id, String(request.headers['webhook-timestamp']), request.body),
    );
  }
});

test('after the last retry a delivery is dead; recover re-sends it', async () => {
  const { key } = await createOrgWithKey(base);
  const hook = await receiver(() => ({ status: 503 }));
  const endpoint = await createWebhook(hook.url, key);
  const id = await send(key);
  const dead = await waitFor('a dead delivery', async () => {
    const d = await deliveryOf(endpoint.id, key);
    return d?.status === 'dead' ? d : null;
  });
  assert.equal(dead.event_id, id);
  assert.equal(dead.attempts.length, 4, '1 attempt + 3 retries');
  assert.ok(dead.attempts.every((a: any) => a.response_status === 503));
  assert.equal(dead.next_attempt_at, null);
  const listedDead = await call(base, 'GET', `/v1/webhooks/${endpoint.id}/deliveries?status=dead`, { key });
  assert.equal(listedDead.body.deliveries.length, 1);
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.equal(hook.requests.length, 4, 'nothing more is sent once dead');

  hook.behaviour = () => ({ status: 200 });
  const badSince = await call(base, 'POST', `/v1/webhooks/${endpoint.id}/recover`, {
    key,
    body: { since: 'yesterday' },
  });
  assert.equal(badSince.status, 422);
  assert.equal(badSince.body.error.details[0].field, 'since');
  const future = await call(base, 'POST', `/v1/webhooks/${endpoint.id}/recover`, {
    key,
    body: { since: new Date(Date.now() + 60_000).toISOString() },
  });
  assert.deepEqual(future.body, { queued: 0 });
  const recovered = await call(base, 'POST', `/v1/webhooks/${endpoint.id}/recover`, {
    key,
    body: { since: new Date(Date.now() - 60_000).toISOString() },
  });
  assert.equal(recovered.status, 202, recovered.text);
  assert.deepEqual(recovered.body, { queued: 1 });
  const done = await waitFor('the recovered delivery to succeed', async () => {
    const d = await deliveryOf(endpoint.id, key);
    return d?.status === 'succeeded' ? d : null;
  });
  assert.equal(done.attempts.length, 5);
  assert.equal(hook.requests.at(-1)!.headers['webhook-id'], id);
});

test('a receiver that does not answer times out and the delivery is retried', async () => {
  const { key } = await createOrgWithKey(base);
  const hook = await receiver((n) => (n === 0 ? { status: 200, hang: true } : { status: 200 }));
  const endpoint = await createWebhook(hook.url, key);
  await send(key);
  const delivery = await waitFor('success after a timeout', async () => {
    const d = await deliveryOf(endpoint.id, key);
    return d?.status === 'succeeded' ? d : null;
  });
  assert.equal(delivery.attempts.length, 2);
  assert.equal(delivery.attempts[0].response_status, null);
  assert.match(delivery.attempts[0].error, /timed out/);
  assert.ok(delivery.attempts[0].latency_ms >= 900);
  assert.equal(delivery.attempts[1].response_status, 200);
});

test('a connection error is recorded as an attempt with an error and retried', async () => {
  const { key } = await createOrgWithKey(base);
  const port = await freePort(); // nothing listens here
  const endpoint = await createWebhook(`http://127.0.0.1:${port}/gone`, key);
  await send(key);
  const delivery = await waitFor('a dead delivery', async () => {
    const d = await deliveryOf(endpoint.id, key);
    return d?.status === 'dead' ? d : null;
  });
  assert.equal(delivery.attempts.length, 4);
  assert.ok(
    delivery.attempts.every((a: any) => a.response_status === null && /ECONNREFUSED/.test(a.error)),
    JSON.stringify(delivery.attempts),
  );
});

test('410 Gone disables the endpoint at once, with a reason; re-enabling resumes delivery', async () => {
  const { key } = await createOrgWithKey(base);
  const hook = await receiver(() => ({ status: 410 }));
  const endpoint = await createWebhook(hook.url, key);
  await send(key);
  const disabled = await waitFor('the endpoint to be disabled', async () => {
    const got = await call(base, 'GET', `/v1/webhooks/${endpoint.id}`, { key });
    return got.body.enabled === false ? got.body : null;
  });
  assert.match(disabled.disabled_reason, /410/);
  await send(key);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  assert.equal(hook.requests.length, 1, 'a disabled endpoint gets nothing, not even retries');

  hook.behaviour = () => ({ status: 200 });
  const enabled = await call(base, 'PATCH', `/v1/webhooks/${endpoint.id}`, { key, body: { enabled: true } });
  assert.equal(enabled.body.enabled, true);
  assert.equal(enabled.body.disabled_reason, null);
  const fresh = await send(key);
  await waitFor('delivery after re-enabling', () => hook.ids().has(fresh));
});

test('an endpoint whose every attempt failed for WEBHOOK_DISABLE_AFTER_HOURS is disabled and says why', async () => {
  const { key } = await createOrgWithKey(base);
  const hook = await receiver(() => ({ status: 500 }));
  const endpoint = await createWebhook(hook.url, key);
  await send(key);
  await waitFor('a first failure', () => hook.requests.length >= 1);
  // Pretend the failures started 121 hours ago (default limit 120 h): the next failure disables.
  const db = pg.connect('deliveries');
  try {
    await waitFor(
      'failing_since to be recorded',
      async () => (await db`select failing_since from webhook_endpoints where id = ${endpoint.id}`)[0]?.failing_since,
    );
    await db`update webhook_endpoints set failing_since = now() - interval '121 hours' where id = ${endpoint.id}`;
  } finally {
    await db.end({ timeout: 1 });
  }
  await send(key);
  const disabled = await waitFor('the endpoint to be disabled', async () => {
    const got = await call(base, 'GET', `/v1/webhooks/${endpoint.id}`, { key });
    return got.body.enabled === false ? got.body : null;
  });
  assert.match(disabled.disabled_reason, /failed for 120 hours/);
});

test('a hanging or dead endpoint does not delay healthy endpoints of the same or other orgs', async () => {
  const isolated = await TestServer.start({
    databaseUrl: await pg.createDatabase('isolation'),
    workers: 1,
    env: {
      ...LOCAL,
      WEBHOOK_TIMEOUT_MS: '30000',
      WEBHOOK_RETRY_SCHEDULE: '1s',
      SHUTDOWN_TIMEOUT_MS: '3000',
      WEBHOOK_ENDPOINT_CONCURRENCY: '4',
    },
  });
  servers.push(isolated);
  const at = isolated.url;
  const orgA = await createOrgWithKey(at, { name: 'a' });
  const orgB = await createOrgWithKey(at, { name: 'b' });
  const slow = await receiver(() => ({ status: 200, hang: true }));
  const healthyA = await receiver();
  const healthyB = await receiver();
  const deadPort = await freePort();
  await createWebhook(slow.url, orgA.key, {}, at);
  await createWebhook(`http://127.0.0.1:${deadPort}/`, orgA.key, {}, at);
  await createWebhook(healthyA.url, orgA.key, {}, at);
  await createWebhook(slow.url, orgB.key, {}, at);
  await createWebhook(healthyB.url, orgB.key, {}, at);

  // Enough events that the hanging endpoints have far more due than their concurrency limit.
  const idsA = await sendBatch(orgA.key, 40, at);
  const idsB = await sendBatch(orgB.key, 40, at);
  await waitFor('the slow receiver to be hanging', () => slow.requests.length >= 1, 10_000);
  const started = Date.now();
  const moreA: string[] = [];
  for (let i = 0; i < 10; i++) moreA.push(await send(orgA.key, 'later.event', at));
  // Well before the slow endpoint's 30 s timeout, the healthy ones have everything.
  await waitFor(
    'org A healthy endpoint to get every event',
    () => [...idsA, ...moreA].every((id) => healthyA.ids().has(id)),
    10_000,
  );
  await waitFor('org B healthy endpoint to get every event', () => idsB.every((id) => healthyB.ids().has(id)), 10_000);
  assert.ok(Date.now() - started < 25_000);
  assert.ok(
    slow.requests.length <= 8,
    `the hanging endpoint holds at most its concurrency limit per org endpoint (got ${slow.requests.length})`,
  );
  assert.equal(await isolated.stop(), 0, isolated.output);
});
