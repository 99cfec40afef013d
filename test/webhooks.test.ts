import assert from 'node:assert/strict';
import type dns from 'node:dns';
import { after, before, test } from 'node:test';
import { RETRY_AFTER_CAP_MS, parseRetryAfter, retryDelayMs } from '../src/delivery/retry.js';
import { generateSecret } from '../src/delivery/signature.js';
import { isBlockedAddress, guardedLookup } from '../src/delivery/ssrf.js';
import { uuidv7 } from '../src/ids.js';
import { call, createOrgWithKey, sendEvent } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { TestServer } from './helpers/server.js';
import { Receiver, expectedSignature, waitFor } from './webhooks-receiver.js';

/** Webhook endpoint management, signing, filtering, rotation, tenancy and the SSRF guard. */

let pg: TestPostgres;
let server: TestServer;
let base: string;
const receivers: Receiver[] = [];

const LOCAL_RECEIVERS = {
  WEBHOOK_ALLOW_HTTP: 'true',
  WEBHOOK_ALLOW_PRIVATE: 'true',
  WEBHOOK_RETRY_SCHEDULE: '200ms,200ms,200ms',
  WEBHOOK_TIMEOUT_MS: '2000',
};

before(async () => {
  pg = await TestPostgres.shared();
  server = await TestServer.start({
    databaseUrl: await pg.createDatabase('webhooks'),
    workers: 1,
    env: LOCAL_RECEIVERS,
  });
  base = server.url;
});

after(async () => {
  for (const receiver of receivers) await receiver.close();
  await server?.stop();
  await pg?.stop();
});

async function receiver(): Promise<Receiver> {
  const started = await Receiver.start();
  receivers.push(started);
  return started;
}

async function createWebhook(key: string, body: Record<string, unknown>) {
  const response = await call(base, 'POST', '/v1/webhooks', { key, body });
  assert.equal(response.status, 201, response.text);
  return response.body;
}

async function send(key: string, type: string, payload: Record<string, unknown> = {}): Promise<string> {
  const response = await sendEvent(base, key, { type, payload });
  assert.equal(response.status, 202, response.text);
  return response.body.id;
}

test('create, list, get, patch and delete an endpoint; the secret is shown on create only', async () => {
  const { key } = await createOrgWithKey(base);
  const created = await createWebhook(key, {
    url: 'http://127.0.0.1:9/hook',
    event_types: ['user.*'],
    description: 'CRM sync',
  });
  assert.match(created.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7/);
  assert.equal(created.url, 'http://127.0.0.1:9/hook');
  assert.deepEqual(created.event_types, ['user.*']);
  assert.equal(created.description, 'CRM sync');
  assert.equal(created.enabled, true);
  assert.match(created.created_at, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  assert.match(created.secret, /^whsec_[A-Za-z0-9+/]+=*$/);
  const secretBytes = Buffer.from(created.secret.slice(6), 'base64').length;
  assert.ok(secretBytes >= 24 && secretBytes <= 32, `secret has ${secretBytes} bytes`);

  const all = await createWebhook(key, { url: 'http://127.0.0.1:9/all' });
  assert.deepEqual(all.event_types, []);

  const list = await call(base, 'GET', '/v1/webhooks', { key });
  assert.equal(list.status, 200);
  assert.deepEqual(
    list.body.webhooks.map((w: any) => w.id),
    [created.id, all.id],
  );
  assert.ok(!list.text.includes('whsec_'), 'list must never show secrets');

  const got = await call(base, 'GET', `/v1/webhooks/${created.id}`, { key });
  assert.equal(got.status, 200);
  assert.equal(got.body.secret, undefined);
  assert.equal(got.body.disabled_reason, null);

  const patched = await call(base, 'PATCH', `/v1/webhooks/${created.id}`, {
    key,
    body: { url: 'http://127.0.0.1:10/new', event_types: ['order.paid'], description: null, enabled: false },
  });
  assert.equal(patched.status, 200, patched.text);
  assert.equal(patched.body.url, 'http://127.0.0.1:10/new');
  assert.deepEqual(patched.body.event_types, ['order.paid']);
  assert.equal(patched.body.description, null);
  assert.equal(patched.body.enabled, false);
  assert.ok(patched.body.disabled_reason);
  const reenabled = await call(base, 'PATCH', `/v1/webhooks/${created.id}`, { key, body: { enabled: true } });
  assert.equal(reenabled.body.enabled, true);
  assert.equal(reenabled.body.disabled_reason, null);
  assert.equal(reenabled.body.url, 'http://127.0.0.1:10/new');

  const deleted = await call(base, 'DELETE', `/v1/webhooks/${created.id}`, { key });
  assert.equal(deleted.status, 204);
  assert.equal((await call(base, 'GET', `/v1/webhooks/${created.id}`, { key })).status, 404);
  assert.equal((await call(base, 'DELETE', `/v1/webhooks/${created.id}`, { key })).status, 404);
});

test('invalid endpoint definitions are 422 naming each field', async () => {
  const { key } = await createOrgWithKey(base);
  const missing = await call(base, 'POST', '/v1/webhooks', { key, body: { event_types: 'user.*', colour: 'red' } });
  assert.equal(missing.status, 422);
  assert.equal(missing.body.error.code, 'validation_failed');
  assert.deepEqual(missing.body.error.details.map((d: any) => d.field).sort(), ['colour', 'event_types', 'url']);
  const badUrl = await call(base, 'POST', '/v1/webhooks', { key, body: { url: 'ftp://example.com/x' } });
  assert.equal(badUrl.status, 422);
  assert.equal(badUrl.body.error.details[0].field, 'url');
  const badPatch = await call(
    base,
    'PATCH',
    `/v1/webhooks/${(await createWebhook(key, { url: 'http://127.0.0.1:9/' })).id}`,
    { key, body: { enabled: 'yes' } },
  );
  assert.equal(badPatch.status, 422);
  assert.equal(badPatch.body.error.details[0].field, 'enabled');
  const notJson = await call(base, 'POST', '/v1/webhooks', {
    key,
    raw: 'url=x',
    headers: { 'content-type': 'text/plain' },
  });
  assert.equal(notJson.status, 415);
});

test("another org's endpoints are 404 everywhere, and webhooks:manage is required", async () => {
  const a = await createOrgWithKey(base, { name: 'a' });
  const b = await createOrgWithKey(base, { name: 'b' });
  const hook = await createWebhook(a.key, { url: 'http://127.0.0.1:9/a' });
  const paths: Array<[string, string, unknown?]> = [
    ['GET', `/v1/webhooks/${hook.id}`],
    ['PATCH', `/v1/webhooks/${hook.id}`, { description: 'mine now' }],
    ['DELETE', `/v1/webhooks/${hook.id}`],
    ['POST', `/v1/webhooks/${hook.id}/rotate-secret`],
    ['GET', `/v1/webhooks/${hook.id}/deliveries`],
    ['POST', `/v1/webhooks/${hook.id}/recover`, { since: '2020-01-01T00:00:00Z' }],
  ];
  for (const [method, path, body] of paths) {
    const response = await call(base, method, path, { key: b.key, body });
    assert.equal(response.status, 404, `${method} ${path}: ${response.text}`);
    assert.equal(response.body.error.code, 'not_found');
  }
  assert.deepEqual((await call(base, 'GET', '/v1/webhooks', { key: b.key })).body.webhooks, []);
  assert.equal((await call(base, 'GET', `/v1/webhooks/${hook.id}`, { key: a.key })).body.description, null);
  assert.equal((await call(base, 'GET', '/v1/webhooks/not-a-uuid', { key: a.key })).status, 404);

  const ingestOnly = await createOrgWithKey(base, { scopes: ['events:write'] });
  const forbidden = await call(base, 'GET', '/v1/webhooks', { key: ingestOnly.key });
  assert.equal(forbidden.status, 403);
  assert.equal(forbidden.body.error.code, 'forbidden');
});

test('an event is POSTed with Standard Webhooks headers and a signature that verifies', async () => {
  const { key } = await createOrgWithKey(base);
  const before = await send(key, 'user.signup', { before: true });
  const hook = await receiver();
  const endpoint = await createWebhook(key, { url: hook.url });
  const payload = { user: 'ada', n: 1, nested: { emoji: '✓' } };
  const id = (
    await sendEvent(base, key, { type: 'user.signup', payload, occurred_at: '2026-01-02T03:04:05.678+01:00' })
  ).body.id;

  await waitFor('the delivery', () => hook.ids().has(id));
  const request = hook.requests.find((r) => r.headers['webhook-id'] === id)!;
  assert.equal(request.method, 'POST');
  assert.equal(request.headers['content-type'], 'application/json');
  const timestamp = String(request.headers['webhook-timestamp']);
  assert.match(timestamp, /^\d{10}$/);
  assert.ok(Math.abs(Number(timestamp) - Date.now() / 1000) < 300);
  assert.equal(request.headers['webhook-signature'], expectedSignature(endpoint.secret, id, timestamp, request.body));
  const body = JSON.parse(request.body);
  assert.deepEqual(Object.keys(body).sort(), ['id', 'occurred_at', 'payload', 'received_at', 'type']);
  assert.equal(body.id, id);
  assert.equal(body.type, 'user.signup');
  assert.deepEqual(body.payload, payload);
  assert.equal(body.occurred_at, '2026-01-02T02:04:05.678Z');
  assert.match(body.received_at, /Z$/);
  assert.ok(!hook.ids().has(before), 'events from before the endpoint existed are not delivered');

  const deliveries = await waitFor('the succeeded delivery', async () => {
    const page = await call(base, 'GET', `/v1/webhooks/${endpoint.id}/deliveries?status=succeeded`, { key });
    return page.body.deliveries.length === 1 ? page.body : null;
  });
  const [delivery] = deliveries.deliveries;
  assert.equal(delivery.event_id, id);
  assert.equal(delivery.status, 'succeeded');
  assert.equal(delivery.next_attempt_at, null);
  assert.equal(delivery.attempts.length, 1);
  assert.equal(delivery.attempts[0].response_status, 200);
  assert.equal(delivery.attempts[0].error, null);
  assert.equal(typeof delivery.attempts[0].latency_ms, 'number');
  assert.equal(deliveries.next_cursor, null);
  const bad = await call(base, 'GET', `/v1/webhooks/${endpoint.id}/deliveries?status=lost`, { key });
  assert.equal(bad.status, 422);
  assert.equal(bad.body.error.details[0].field, 'status');
});

test('event_types filters exact types and prefixes; deliveries page with a cursor', async () => {
  const { key } = await createOrgWithKey(base);
  const hook = await receiver();
  const endpoint = await createWebhook(key, { url: hook.url, event_types: ['user.*', 'order.paid'] });
  const wanted = [await send(key, 'user.signup'), await send(key, 'order.paid'), await send(key, 'user.deleted')];
  const unwanted = [await send(key, 'order.created'), await send(key, 'billing.user.x'), await send(key, 'users')];
  const marker = await send(key, 'user.marker');
  await waitFor('the marker event', () => hook.ids().has(marker));
  // Fan-out reads in commit order, so everything sent before the marker has been decided.
  await new Promise((resolve) => setTimeout(resolve, 500));
  for (const id of wanted) assert.ok(hook.ids().has(id), `wanted ${id} delivered`);
  for (const id of unwanted) assert.ok(!hook.ids().has(id), `unwanted ${id} not delivered`);

  const seen: string[] = [];
  let cursor: string | null = '';
  while (cursor !== null) {
    const page: any = await call(
      base,
      'GET',
      `/v1/webhooks/${endpoint.id}/deliveries?limit=2${cursor ? `&cursor=${cursor}` : ''}`,
      { key },
    );
    assert.equal(page.status, 200, page.text);
    assert.ok(page.body.deliveries.length <= 2);
    seen.push(...page.body.deliveries.map((d: any) => d.event_id));
    cursor = page.body.next_cursor;
  }
  assert.deepEqual(new Set(seen), new Set([...wanted, marker]));
  assert.equal(seen.length, 4);
});

test('filter (API.md §5): only matching events are delivered, the rest create no delivery; PATCH changes it; bad filters are 422 naming filter', async () => {
  const { key } = await createOrgWithKey(base);
  const hook = await receiver();
  const filter = {
    'payload.amount': { $gte: 100 },
    $or: [{ 'payload.country': { $in: ['DE', 'FR'] } }, { type: { $prefix: 'vip.' } }],
  };
  const endpoint = await createWebhook(key, { url: hook.url, filter });
  assert.deepEqual(endpoint.filter, filter);
  const wanted = [
    await send(key, 'order.paid', { amount: 100, country: 'DE' }),
    await send(key, 'vip.order', { amount: 250.5, country: 'US' }),
  ];
  const unwanted = [
    await send(key, 'order.paid', { amount: 99, country: 'DE' }),
    await send(key, 'order.paid', { amount: '100', country: 'FR' }), // a string never compares with a number
    await send(key, 'order.paid', { country: 'FR' }), // a missing path
    await send(key, 'order.paid', { amount: 500, country: 'US' }),
  ];
  const marker = await send(key, 'vip.marker', { amount: 1_000 });
  await waitFor('the marker event', () => hook.ids().has(marker));
  await new Promise((resolve) => setTimeout(resolve, 300));
  for (const id of wanted) assert.ok(hook.ids().has(id), `wanted ${id} delivered`);
  for (const id of unwanted) assert.ok(!hook.ids().has(id), `unwanted ${id} not delivered`);
  const deliveries = await call(base, 'GET', `/v1/webhooks/${endpoint.id}/deliveries?limit=100`, { key });
  assert.deepEqual(
    new Set(deliveries.body.deliveries.map((d: any) => d.event_id)),
    new Set([...wanted, marker]),
    'filtered-out events create no delivery',
  );

  // A PATCH applies to events read after it; null clears it (every event again).
  const patched = await call(base, 'PATCH', `/v1/webhooks/${endpoint.id}`, {
    key,
    body: { filter: { 'payload.country': 'US' } },
  });
  assert.equal(patched.status, 200, patched.text);
  assert.deepEqual(patched.body.filter, { 'payload.country': 'US' });
  await waitFor(
    'the new filter to apply',
    async () => {
      const id = await send(key, 'probe', { country: 'US' });
      await new Promise((resolve) => setTimeout(resolve, 200));
      return hook.ids().has(id);
    },
    10_000,
    50,
  );
  const german = await send(key, 'order.paid', { amount: 1_000, country: 'DE' });
  // Fan-out reads in commit order: once a later US event arrives, the German one has been decided.
  const usAfterGerman = await send(key, 'order.paid', { country: 'US' });
  await waitFor('a US event after the German one', () => hook.ids().has(usAfterGerman));
  const cleared = await call(base, 'PATCH', `/v1/webhooks/${endpoint.id}`, { key, body: { filter: null } });
  assert.equal(cleared.body.filter, null);
  // Like the PATCH above, clearing applies to events read more than 1 s after its answer (API.md §5).
  await waitFor(
    'an event with no filter',
    async () => {
      const id = await send(key, 'anything', {});
      await new Promise((resolve) => setTimeout(resolve, 200));
      return hook.ids().has(id);
    },
    10_000,
    50,
  );
  assert.ok(!hook.ids().has(german), 'read under the US-only filter');
  assert.equal((await call(base, 'GET', `/v1/webhooks/${endpoint.id}`, { key })).body.filter, null);

  for (const bad of [
    { 'payload.a': { $regex: 'x' } },
    { 'payload.a': { $gt: [1] } },
    [],
    'x',
    { $or: [] },
    { ['x'.repeat(9_000)]: 1 },
  ]) {
    for (const [method, path] of [
      ['POST', '/v1/webhooks'],
      ['PATCH', `/v1/webhooks/${endpoint.id}`],
    ] as const) {
      const response = await call(base, method, path, { key, body: { url: hook.url, filter: bad } });
      assert.equal(response.status, 422, `${method} ${JSON.stringify(bad).slice(0, 40)}: ${response.text}`);
      assert.ok(
        response.body.error.details.some((detail: any) => detail.field === 'filter'),
        response.text,
      );
    }
  }
});

test('after rotate-secret both the new and the old signature are sent', async () => {
  const { key } = await createOrgWithKey(base);
  const hook = await receiver();
  const endpoint = await createWebhook(key, { url: hook.url });
  const rotated = await call(base, 'POST', `/v1/webhooks/${endpoint.id}/rotate-secret`, { key });
  assert.equal(rotated.status, 200, rotated.text);
  assert.match(rotated.body.secret, /^whsec_/);
  assert.notEqual(rotated.body.secret, endpoint.secret);
  assert.ok(Date.parse(rotated.body.previous_secret_expires_at) - Date.now() > 23 * 3_600_000);
  assert.equal((await call(base, 'GET', `/v1/webhooks/${endpoint.id}`, { key })).body.secret, undefined);

  // The rotation applies at once (docs/WEBHOOKS.md "Secret rotation"): the first delivery after
  // its answer already carries both signatures, new first.
  const id = await send(key, 'rotation.check');
  await waitFor('the delivery', () => hook.ids().has(id));
  const request = hook.requests.find((r) => r.headers['webhook-id'] === id)!;
  const timestamp = String(request.headers['webhook-timestamp']);
  assert.deepEqual(String(request.headers['webhook-signature']).split(' '), [
    expectedSignature(rotated.body.secret, id, timestamp, request.body),
    expectedSignature(endpoint.secret, id, timestamp, request.body),
  ]);
});

test('the SSRF guard classifies addresses and filters DNS answers at connect time', async () => {
  for (const address of [
    '127.0.0.1',
    '10.1.2.3',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.1.1',
    '169.254.169.254',
    '0.0.0.0',
    '100.64.0.1',
    '::1',
    '::',
    'fc00::1',
    'fd00:ec2::254',
    'fe80::1',
    '::ffff:127.0.0.1',
    '::ffff:a00:1',
  ]) {
    assert.equal(isBlockedAddress(address), true, address);
  }
  for (const address of ['93.184.216.34', '8.8.8.8', '172.32.0.1', '100.128.0.1', '2606:4700::1111']) {
    assert.equal(isBlockedAddress(address), false, address);
  }
  const error = await new Promise<NodeJS.ErrnoException | null>((resolve) =>
    guardedLookup('localhost', { all: true } as dns.LookupOptions, (err) => resolve(err)),
  );
  assert.ok(error && /refused/.test(error.message), 'localhost is refused at connect time');
});

test('without WEBHOOK_ALLOW_HTTP/PRIVATE, http:// and private addresses are refused at registration', async () => {
  const strict = await TestServer.start({ databaseUrl: await pg.createDatabase('webhooks_strict'), workers: 1 });
  try {
    const { key } = await createOrgWithKey(strict.url);
    for (const url of [
      'http://127.0.0.1:8080/hook',
      'https://10.0.0.1/hook',
      'https://169.254.169.254/latest',
      'https://[::1]/x',
      'https://192.168.0.10/x',
      'https://100.64.1.1/x',
      'https://0.0.0.0/x',
      'https://[fd00:ec2::254]/x',
      'https://localhost/x',
    ]) {
      const response = await call(strict.url, 'POST', '/v1/webhooks', { key, body: { url } });
      assert.equal(response.status, 422, `${url}: ${response.text}`);
      assert.equal(response.body.error.code, 'validation_failed');
      assert.equal(response.body.error.details[0].field, 'url');
    }
    const ok = await call(strict.url, 'POST', '/v1/webhooks', { key, body: { url: 'https://93.184.216.34/hook' } });
    assert.equal(ok.status, 201, ok.text);
    const patched = await call(strict.url, 'PATCH', `/v1/webhooks/${ok.body.id}`, {
      key,
      body: { url: 'https://10.0.0.1/x' },
    });
    assert.equal(patched.status, 422);
    assert.equal(patched.body.error.details[0].field, 'url');
    await call(strict.url, 'DELETE', `/v1/webhooks/${ok.body.id}`, { key });
  } finally {
    assert.equal(await strict.stop(), 0);
  }
});

test('retry waits: the schedule with ±20% jitter, Retry-After honoured up to a cap, null when exhausted', () => {
  const schedule = [5_000, 300_000];
  assert.equal(
    retryDelayMs(schedule, 0, null, () => 0),
    4_000,
  );
  assert.equal(
    retryDelayMs(schedule, 0, null, () => 1),
    6_000,
  );
  assert.equal(
    retryDelayMs(schedule, 1, null, () => 0.5),
    300_000,
  );
  assert.equal(retryDelayMs(schedule, 2, null), null, 'past the schedule: dead');
  assert.equal(
    retryDelayMs(schedule, 0, 60_000, () => 0.5),
    60_000,
    'a longer Retry-After wins',
  );
  assert.equal(
    retryDelayMs(schedule, 1, 1_000, () => 0.5),
    300_000,
    'a shorter Retry-After does not speed up the schedule',
  );
  assert.equal(
    retryDelayMs(schedule, 0, 30 * 86_400_000, () => 0.5),
    RETRY_AFTER_CAP_MS,
    'capped',
  );
  assert.equal(parseRetryAfter('120', 0), 120_000);
  assert.equal(parseRetryAfter(new Date(90_000).toUTCString(), 30_000), 60_000);
  assert.equal(parseRetryAfter('soon'), null);
  assert.equal(parseRetryAfter(undefined), null);
});

test("a receiver's Retry-After postpones the next attempt", async () => {
  const { key } = await createOrgWithKey(base);
  const hook = await Receiver.start((n) =>
    n === 0 ? { status: 429, headers: { 'retry-after': '2' } } : { status: 200 },
  );
  receivers.push(hook);
  const endpoint = await createWebhook(key, { url: hook.url });
  await send(key, 'retry.after');
  const delivery = await waitFor('success after Retry-After', async () => {
    const page = await call(base, 'GET', `/v1/webhooks/${endpoint.id}/deliveries`, { key });
    return page.body.deliveries[0]?.status === 'succeeded' ? page.body.deliveries[0] : null;
  });
  const [first, second] = delivery.attempts;
  assert.equal(first.response_status, 429);
  assert.ok(
    Date.parse(first.next_attempt_at) - Date.parse(first.at) >= 1_900,
    'next attempt scheduled about 2 s later, not 200 ms',
  );
  assert.ok(Date.parse(second.at) - Date.parse(first.at) >= 1_900);
  assert.equal(second.response_status, 200);
});

test('without WEBHOOK_ALLOW_PRIVATE, a URL that points at a private address by send time is refused at connect time', async () => {
  const databaseUrl = await pg.createDatabase('webhooks_connect_guard');
  const guarded = await TestServer.start({
    databaseUrl,
    workers: 1,
    env: { WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_RETRY_SCHEDULE: '100ms' },
  });
  const db = pg.connect('webhooks_connect_guard');
  try {
    const { key, orgId } = await createOrgWithKey(guarded.url);
    const hook = await receiver();
    const port = new URL(hook.url).port;
    // Endpoints whose URLs point at this machine by send time (as if DNS changed after a public
    // registration), written straight into the table: the API would refuse them, and a URL changed
    // behind the server's back after registration could be sent to before it notices.
    const insertEndpoint = async (url: string) => {
      const [row] = await db`
        insert into webhook_endpoints (id, org_id, url, secret, deliver_from, cursor_seq)
        values (${uuidv7(Date.now())}, ${orgId}, ${url}, ${generateSecret()}, clock_timestamp(),
                (select coalesce(max(seq), 0) from events where org_id = ${orgId}))
        returning id`;
      return { id: row!.id as string };
    };
    const byName = await insertEndpoint(`http://localhost:${port}/hook`);
    const byLiteral = await insertEndpoint(`http://127.0.0.1:${port}/hook`);
    assert.equal((await sendEvent(guarded.url, key, { type: 'ssrf.check', payload: {} })).status, 202);
    for (const endpoint of [byName, byLiteral]) {
      const dead = await waitFor('a dead delivery', async () => {
        const page = await call(guarded.url, 'GET', `/v1/webhooks/${endpoint.id}/deliveries`, { key });
        return page.body.deliveries[0]?.status === 'dead' ? page.body.deliveries[0] : null;
      });
      assert.ok(
        dead.attempts.every((a: any) => a.response_status === null && /refused/.test(a.error)),
        JSON.stringify(dead.attempts),
      );
    }
    assert.equal(hook.requests.length, 0, 'nothing reached the private address');
  } finally {
    await db.end({ timeout: 1 });
    assert.equal(await guarded.stop(), 0);
  }
});
