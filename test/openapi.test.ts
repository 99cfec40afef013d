import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { routeTableWithoutServer } from '../src/cluster/route-table.js';
import { uuidv7 } from '../src/ids.js';
import { buildOpenApiDocument } from '../src/openapi/document.js';
import type { DocumentedRoute } from '../src/openapi/operation.js';
import { call, createOrgWithKey, sendEvent, UNKNOWN_API_KEY, type ApiResponse } from './helpers/api.js';
import { InProcessServer } from './helpers/in-process.js';
import { OpenApiChecker } from './helpers/openapi.js';
import { TestPostgres } from './helpers/postgres.js';
import { TestServer } from './helpers/server.js';
import { Receiver, waitFor } from './webhooks-receiver.js';

/**
 * GET /openapi.json (issue #15): the committed docs/openapi.json is what the server serves, it
 * lints clean, it lists every route of the route tables, and the server's answers match it —
 * status documented, body valid against the schema, required headers present — for the main
 * success and error answers of every route.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const COMMITTED = fs.readFileSync(path.join(ROOT, 'docs/openapi.json'), 'utf8');
const METRICS_TOKEN = 'metrics-token-for-openapi-test';

let pg: TestPostgres;
let server: InProcessServer;
/** The real server (primary + one worker of each role) on the same database, without ADMIN_TOKEN. */
let cluster: TestServer;
let base: string;
let checker: OpenApiChecker;
let key: string;
let orgId: string;
let keyId: string;
const receivers: Receiver[] = [];

const LOCAL_WEBHOOKS = {
  WEBHOOK_ALLOW_HTTP: 'true',
  WEBHOOK_ALLOW_PRIVATE: 'true',
  DESTINATION_ALLOWED_HOSTS: '127.0.0.1',
};

before(async () => {
  pg = await TestPostgres.start();
  const databaseUrl = await pg.createDatabase('openapi');
  server = await InProcessServer.start({ databaseUrl, env: LOCAL_WEBHOOKS });
  base = server.url;
  cluster = await TestServer.start({
    databaseUrl,
    workers: 1,
    env: {
      ...LOCAL_WEBHOOKS,
      ADMIN_TOKEN: '',
      METRICS_TOKEN,
      WEBHOOK_RETRY_SCHEDULE: '100ms',
      WEBHOOK_TIMEOUT_MS: '2000',
    },
  });
  checker = new OpenApiChecker(JSON.parse(COMMITTED));
  ({ key, orgId, keyId } = await createOrgWithKey(base));
});

after(async () => {
  for (const receiver of receivers) await receiver.close();
  await cluster?.stop();
  await server?.stop();
  await pg?.stop();
});

/** One request, checked against the document; returns the answer for further assertions. */
async function expectCall(
  method: string,
  template: string,
  target: string,
  options: Parameters<typeof call>[3] = {},
  at = base,
): Promise<ApiResponse> {
  const response = await call(at, method, target, options);
  checker.expectMatches(method, template, response);
  return response;
}

test('the committed docs/openapi.json is exactly what GET /openapi.json serves, in-process and from the cluster', async () => {
  const served = await expectCall('GET', '/openapi.json', '/openapi.json');
  assert.equal(served.text, COMMITTED, 'docs/openapi.json is stale: run `npm run openapi` and commit it');
  const fromCluster = await call(cluster.url, 'GET', '/openapi.json');
  assert.equal(fromCluster.text, COMMITTED);
  assert.equal(served.body.openapi, '3.1.0');
});

test('every route of the route tables is in the document, and nothing else', () => {
  const methods = { get: 'get', post: 'post', put: 'put', patch: 'patch', del: 'delete' } as const;
  const fromTables = routeTableWithoutServer()
    .map((route) => `${methods[route.method]} ${route.path.replace(/:(\w+)/g, '{$1}')}`)
    .sort();
  const fromDocument = Object.entries(checker.document.paths as Record<string, object>)
    .flatMap(([template, item]) => Object.keys(item).map((method) => `${method} ${template}`))
    .sort();
  assert.deepEqual(fromDocument, fromTables);
  assert.ok(fromTables.includes('get /openapi.json'));
});

test('the builder refuses a route that does not document what its fields imply', () => {
  const doc = { operationId: 'x', summary: 'x', tag: 'Events' as const, responses: { 200: { description: 'ok' } } };
  const build = (route: object) => () =>
    buildOpenApiDocument([{ method: 'get', path: '/x', auth: 'public', doc, ...route } as DocumentedRoute], {
      version: '0',
    });
  assert.throws(build({ path: '/x/:id' }), /does not document its path parameter id/);
  assert.throws(build({ method: 'post', bodyLimit: 10 }), /reads a body it does not document/);
  assert.throws(build({ doc: { ...doc, requestBody: { schema: {} } } }), /documents a body it does not read/);
  assert.throws(build({ doc: { ...doc, responses: { 404: { description: 'no' } } } }), /documents no success/);
  assert.doesNotThrow(build({}));
});

test('the examples in the document are valid against their schemas', () => {
  const schemas = Object.entries(checker.document.components.schemas as Record<string, { examples?: unknown[] }>);
  const withExamples = schemas.filter(([, schema]) => schema.examples !== undefined);
  assert.ok(withExamples.length >= 5);
  for (const [name, schema] of withExamples) {
    for (const example of schema.examples!)
      checker.validate(['components', 'schemas', name], example, `example of ${name}`);
  }
});

test('ingest: 202, 200 duplicate (dedup_id and Idempotency-Key), X-API-Key, and every error of the route', async () => {
  await expectCall('POST', '/v1/events', '/v1/events', {
    key,
    body: { type: 'user.signup', payload: { a: 1 }, occurred_at: '2026-01-01T10:00:00+02:00' },
  });
  const first = await expectCall('POST', '/v1/events', '/v1/events', {
    key,
    body: { type: 'a', payload: {}, dedup_id: 'd-1' },
  });
  assert.equal(first.status, 202);
  const again = await expectCall('POST', '/v1/events', '/v1/events', {
    key,
    body: { type: 'b', payload: { other: true }, dedup_id: 'd-1' },
  });
  assert.equal(again.status, 200);
  assert.equal(again.body.status, 'duplicate');
  await expectCall('POST', '/v1/events', '/v1/events', {
    key,
    body: { type: 'a', payload: {} },
    headers: { 'idempotency-key': 'idem-1' },
  });
  const idem = await expectCall('POST', '/v1/events', '/v1/events', {
    key,
    body: { type: 'a', payload: {} },
    headers: { 'idempotency-key': 'idem-1' },
  });
  assert.equal(idem.status, 200);
  const viaHeader = await expectCall('POST', '/v1/events', '/v1/events', {
    body: { type: 'a', payload: {} },
    headers: { 'x-api-key': key, 'x-request-id': 'mine-1' },
  });
  assert.equal(viaHeader.status, 202);
  assert.equal(viaHeader.headers.get('x-request-id'), 'mine-1');

  const statuses = async (...answers: Array<Promise<ApiResponse>>) =>
    (await Promise.all(answers)).map((answer) => answer.status);
  const readOnly = await createOrgWithKey(base, { scopes: ['events:read'] });
  assert.deepEqual(
    await statuses(
      expectCall('POST', '/v1/events', '/v1/events', {
        key,
        raw: '{"type":',
        headers: { 'content-type': 'application/json' },
      }),
      expectCall('POST', '/v1/events', '/v1/events', { body: { type: 'a', payload: {} } }),
      expectCall('POST', '/v1/events', '/v1/events', {
        body: { type: 'a', payload: {} },
        headers: { 'x-api-key': UNKNOWN_API_KEY },
      }),
      expectCall('POST', '/v1/events', '/v1/events', { key: readOnly.key, body: { type: 'a', payload: {} } }),
      expectCall('POST', '/v1/events', '/v1/events', {
        key,
        raw: 'x'.repeat(600 * 1024),
        headers: { 'content-type': 'application/json' },
      }),
      expectCall('POST', '/v1/events', '/v1/events', {
        key,
        body: { type: 'a', payload: { big: 'x'.repeat(300 * 1024) } },
      }),
      expectCall('POST', '/v1/events', '/v1/events', { key, raw: '{}', headers: { 'content-type': 'text/plain' } }),
      expectCall('POST', '/v1/events', '/v1/events', { key, body: { type: 'bad type!', payload: [1], extra: 1 } }),
      expectCall('PUT', '/v1/events', '/v1/events', { key, body: {} }),
    ),
    [400, 401, 401, 403, 413, 413, 415, 422, 405],
  );
});

test('ingest: 429 with Retry-After once an org with 1 event/s and burst 1 is over its limit', async () => {
  const slow = await createOrgWithKey(base, { rate_limit_per_sec: 1, burst: 1 });
  let limited: ApiResponse | null = null;
  for (let i = 0; i < 5 && limited === null; i++) {
    const response = await expectCall('POST', '/v1/events', '/v1/events', {
      key: slow.key,
      body: { type: 'a', payload: {} },
    });
    if (response.status === 429) limited = response;
  }
  assert.ok(limited, 'never limited');
  const batch = await expectCall('POST', '/v1/events/batch', '/v1/events/batch', {
    key: slow.key,
    body: {
      events: [
        { type: 'a', payload: {} },
        { type: 'b', payload: {} },
      ],
    },
  });
  assert.equal(batch.status, 429);
});

test('batch: 200 with accepted, duplicate and rejected items; 422 envelope; body errors', async () => {
  const mixed = await expectCall('POST', '/v1/events/batch', '/v1/events/batch', {
    key,
    body: {
      events: [
        { type: 'a', payload: {} },
        { type: 'a', payload: {}, dedup_id: 'd-1' },
        { type: 'no spaces', payload: {} },
        { type: 'a', payload: { big: 'x'.repeat(300 * 1024) } },
      ],
    },
  });
  assert.equal(mixed.status, 200);
  assert.deepEqual([mixed.body.accepted, mixed.body.duplicates, mixed.body.rejected], [1, 1, 2]);
  assert.equal(mixed.body.results[3].error.code, 'payload_too_large');
  assert.equal(
    (await expectCall('POST', '/v1/events/batch', '/v1/events/batch', { key, body: { events: [] } })).status,
    422,
  );
  assert.equal((await expectCall('POST', '/v1/events/batch', '/v1/events/batch', { key, body: [1] })).status, 422);
  assert.equal(
    (
      await expectCall('POST', '/v1/events/batch', '/v1/events/batch', {
        key,
        raw: '',
        headers: { 'content-type': 'application/json' },
      })
    ).status,
    400,
  );
  assert.equal(
    (
      await expectCall('POST', '/v1/events/batch', '/v1/events/batch', {
        key,
        raw: 'x'.repeat(9 * 1024 * 1024),
        headers: { 'content-type': 'application/json' },
      })
    ).status,
    413,
  );
  assert.equal((await expectCall('GET', '/v1/events/batch', '/v1/events/batch', { key })).status, 405);
});

test('inbox pages, ack, event get and delete', async () => {
  const reader = await createOrgWithKey(base);
  const ids: string[] = [];
  for (let i = 0; i < 3; i++)
    ids.push((await sendEvent(base, reader.key, { type: `inbox.${i}`, payload: { i }, dedup_id: `i-${i}` })).body.id);

  const page = await expectCall('GET', '/v1/inbox', '/v1/inbox?limit=2', { key: reader.key });
  assert.equal(page.body.events.length, 2);
  assert.equal(page.body.has_more, true);
  const rest = await expectCall('GET', '/v1/inbox', `/v1/inbox?limit=2&cursor=${page.body.next_cursor}&type=inbox.*`, {
    key: reader.key,
  });
  assert.deepEqual(
    rest.body.events.map((event: { id: string }) => event.id),
    [ids[2]],
  );
  await expectCall('GET', '/v1/inbox', '/v1/inbox?order=desc', { key: reader.key });
  const empty = await expectCall('GET', '/v1/inbox', `/v1/inbox?cursor=${rest.body.next_cursor}`, { key: reader.key });
  assert.deepEqual([empty.body.events, empty.body.has_more], [[], false]);
  const bad = await expectCall('GET', '/v1/inbox', '/v1/inbox?limit=0&order=up&limt=5&cursor=nope', {
    key: reader.key,
  });
  assert.equal(bad.status, 422);
  assert.equal(bad.body.error.details.length, 4);
  const listed = await expectCall('GET', '/v1/events', '/v1/events?limit=2&type=inbox.*', { key: reader.key });
  assert.equal(listed.body.events.length, 2);
  assert.deepEqual(
    (
      await expectCall('GET', '/v1/events', `/v1/events?limit=2&type=inbox.*&cursor=${listed.body.next_cursor}`, {
        key: reader.key,
      })
    ).body,
    { events: [(await call(base, 'GET', `/v1/events/${ids[0]}`, { key: reader.key })).body], next_cursor: null },
  );
  const badList = await expectCall('GET', '/v1/events', '/v1/events?limit=0&since=yesterday&cursor=nope', {
    key: reader.key,
  });
  assert.equal(badList.status, 422);
  assert.equal(badList.body.error.details.length, 3);
  assert.equal((await expectCall('GET', '/v1/inbox', '/v1/inbox')).status, 401);
  const noRead = await createOrgWithKey(base, { scopes: ['events:write'] });
  assert.equal((await expectCall('GET', '/v1/inbox', '/v1/inbox', { key: noRead.key })).status, 403);

  const acked = await expectCall('POST', '/v1/ack', '/v1/ack', {
    key: reader.key,
    body: { ids: [ids[0], 'not-an-id', uuidv7(Date.now())] },
  });
  assert.equal(acked.body.acked, 1);
  assert.equal(acked.body.not_found.length, 2);
  assert.equal((await expectCall('POST', '/v1/ack', '/v1/ack', { key: reader.key, body: { ids: [] } })).status, 422);
  assert.equal(
    (
      await expectCall('POST', '/v1/ack', '/v1/ack', {
        key: reader.key,
        raw: 'nope',
        headers: { 'content-type': 'application/json' },
      })
    ).status,
    400,
  );
  assert.equal(
    (
      await expectCall('POST', '/v1/ack', '/v1/ack', {
        key: reader.key,
        raw: 'ids',
        headers: { 'content-type': 'text/plain' },
      })
    ).status,
    415,
  );
  assert.equal((await expectCall('GET', '/v1/ack', '/v1/ack', { key: reader.key })).status, 405);

  const got = await expectCall('GET', '/v1/events/{id}', `/v1/events/${ids[0]}`, { key: reader.key });
  assert.equal(typeof got.body.acked_at, 'string');
  const unacked = await expectCall('GET', '/v1/events/{id}', `/v1/events/${ids[1]}`, { key: reader.key });
  assert.equal(unacked.body.acked_at, null);
  assert.equal(
    (await expectCall('GET', '/v1/events/{id}', `/v1/events/${ids[1]}`, { key })).status,
    404,
    'another org',
  );
  assert.equal((await expectCall('GET', '/v1/events/{id}', '/v1/events/nope', { key })).status, 404);
  assert.equal(
    (await expectCall('DELETE', '/v1/events/{id}', `/v1/events/${ids[1]}`, { key: reader.key })).status,
    204,
  );
  assert.equal(
    (await expectCall('DELETE', '/v1/events/{id}', `/v1/events/${ids[1]}`, { key: reader.key })).status,
    204,
  );
  assert.equal(
    (await expectCall('DELETE', '/v1/events/{id}', `/v1/events/${uuidv7(Date.now())}`, { key: reader.key })).status,
    404,
  );
  assert.equal(
    (await expectCall('PATCH', '/v1/events/{id}', `/v1/events/${ids[1]}`, { key: reader.key, body: {} })).status,
    405,
  );
});

test('consumer groups: create, list, get, patch, receive, ack, nack, extend, dead, redrive, seek, delete, and their errors', async () => {
  const { key: reader } = await createOrgWithKey(base);
  const G = '/v1/consumer-groups';
  const created = await expectCall('POST', G, G, {
    key: reader,
    body: {
      name: 'docs',
      start: 'earliest',
      visibility_timeout_s: 1,
      max_deliveries: 1,
      filter: { 'payload.i': { $gte: 0 } },
    },
  });
  assert.equal(created.status, 201, created.text);
  assert.equal((await expectCall('POST', G, G, { key: reader, body: { name: 'docs' } })).status, 409);
  assert.equal((await expectCall('POST', G, G, { key: reader, body: { name: 'bad', filter: { x: 1 } } })).status, 422);
  assert.equal((await expectCall('GET', G, G, { key: reader })).body.groups.length, 1);
  assert.equal((await expectCall('GET', `${G}/{name}`, `${G}/docs`, { key: reader })).status, 200);
  assert.equal((await expectCall('GET', `${G}/{name}`, `${G}/nope`, { key: reader })).status, 404);
  assert.equal(
    (await expectCall('PATCH', `${G}/{name}`, `${G}/docs`, { key: reader, body: { max_deliveries: 1 } })).status,
    200,
  );
  assert.equal(
    (await expectCall('PATCH', `${G}/{name}`, `${G}/docs`, { key: reader, body: { max_deliveries: 0 } })).status,
    422,
  );
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) ids.push((await sendEvent(base, reader, { type: 'group.docs', payload: { i } })).body.id);
  let messages: Array<{ event: { id: string } }> = [];
  for (let tries = 0; messages.length < 3 && tries < 100; tries++) {
    const received = await expectCall('POST', `${G}/{name}/receive`, `${G}/docs/receive`, {
      key: reader,
      body: { max: 10 },
    });
    messages = messages.concat(received.body.messages);
    if (messages.length < 3) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.equal(messages.length, 3);
  assert.equal(
    (await expectCall('POST', `${G}/{name}/receive`, `${G}/docs/receive`, { key: reader, body: { max: 0 } })).status,
    422,
  );
  assert.equal(
    (await expectCall('POST', `${G}/{name}/receive`, `${G}/docs/receive`, { key: reader })).status,
    200,
    'the body is optional',
  );
  assert.equal(
    (
      await expectCall('POST', `${G}/{name}/extend`, `${G}/docs/extend`, {
        key: reader,
        body: { ids: [ids[2]], visibility_timeout_s: 60 },
      })
    ).body.extended,
    1,
  );
  assert.equal(
    (await expectCall('POST', `${G}/{name}/extend`, `${G}/docs/extend`, { key: reader, body: { ids: [ids[2]] } }))
      .status,
    422,
  );
  assert.equal(
    (await expectCall('POST', `${G}/{name}/ack`, `${G}/docs/ack`, { key: reader, body: { ids: [ids[0], 'nope'] } }))
      .body.acked,
    1,
  );
  assert.equal(
    (await expectCall('POST', `${G}/{name}/ack`, `${G}/docs/ack`, { key: reader, body: { ids: [] } })).status,
    422,
  );
  assert.equal(
    (
      await expectCall('POST', `${G}/{name}/nack`, `${G}/docs/nack`, {
        key: reader,
        body: { ids: [ids[1]], delay_s: 0 },
      })
    ).body.nacked,
    1,
  );
  assert.equal(
    (
      await expectCall('POST', `${G}/{name}/nack`, `${G}/docs/nack`, {
        key: reader,
        body: { ids: [ids[1]], delay_s: -1 },
      })
    ).status,
    422,
  );
  // ids[1] was delivered once (max_deliveries 1) and nacked: the next receive makes it dead.
  await expectCall('POST', `${G}/{name}/receive`, `${G}/docs/receive`, { key: reader, body: {} });
  const dead = await expectCall('GET', `${G}/{name}/dead`, `${G}/docs/dead`, { key: reader });
  assert.deepEqual(
    dead.body.dead.map((entry: { event: { id: string } }) => entry.event.id),
    [ids[1]],
  );
  assert.equal((await expectCall('GET', `${G}/{name}/dead`, `${G}/docs/dead?cursor=%%%`, { key: reader })).status, 422);
  assert.equal(
    (await expectCall('POST', `${G}/{name}/redrive`, `${G}/docs/redrive`, { key: reader, body: { ids: [ids[1]] } }))
      .body.redriven,
    1,
  );
  assert.equal(
    (await expectCall('POST', `${G}/{name}/redrive`, `${G}/docs/redrive`, { key: reader })).body.redriven,
    0,
  );
  assert.equal(
    (
      await expectCall('POST', `${G}/{name}/seek`, `${G}/docs/seek`, {
        key: reader,
        body: { to: '2026-01-01T00:00:00Z' },
      })
    ).status,
    200,
  );
  assert.equal(
    (await expectCall('POST', `${G}/{name}/seek`, `${G}/docs/seek`, { key: reader, body: { to: 'soon' } })).status,
    422,
  );
  assert.equal(
    (
      await expectCall('POST', `${G}/{name}/ack`, `${G}/docs/ack`, {
        key: reader,
        raw: 'nope',
        headers: { 'content-type': 'application/json' },
      })
    ).status,
    400,
  );
  assert.equal((await expectCall('GET', G, G)).status, 401);
  const noRead = await createOrgWithKey(base, { scopes: ['events:write'] });
  assert.equal((await expectCall('GET', G, G, { key: noRead.key })).status, 403);
  assert.equal((await expectCall('DELETE', `${G}/{name}`, `${G}/docs`, { key: reader })).status, 204);
  assert.equal((await expectCall('DELETE', `${G}/{name}`, `${G}/docs`, { key: reader })).status, 404);
});

test('webhooks: create, list, get, patch, rotate, deliveries, recover, delete, and their errors', async () => {
  const created = await expectCall('POST', '/v1/webhooks', '/v1/webhooks', {
    key,
    body: {
      url: 'http://127.0.0.1:9/hook',
      event_types: ['user.*'],
      description: 'test',
      rate_limit_per_sec: 10,
      ordering: 'fifo',
      max_in_flight: 4,
    },
  });
  assert.equal(created.status, 201);
  const id = created.body.id as string;
  assert.equal(
    (await expectCall('POST', '/v1/webhooks', '/v1/webhooks', { key, body: { url: 'http://127.0.0.1:9/other' } }))
      .status,
    201,
  );
  const invalid = await expectCall('POST', '/v1/webhooks', '/v1/webhooks', {
    key,
    body: { url: 'ftp://x', rate_limit_per_sec: 0, ordering: 'random', max_in_flight: 1001, extra: 1 },
  });
  assert.equal(invalid.status, 422);
  assert.deepEqual(invalid.body.error.details.map((d: { field: string }) => d.field).sort(), [
    'extra',
    'max_in_flight',
    'ordering',
    'rate_limit_per_sec',
    'url',
  ]);
  assert.equal(
    (
      await expectCall('POST', '/v1/webhooks', '/v1/webhooks', {
        key,
        raw: '[',
        headers: { 'content-type': 'application/json' },
      })
    ).status,
    400,
  );
  assert.equal(
    (
      await expectCall('POST', '/v1/webhooks', '/v1/webhooks', {
        key,
        raw: 'x'.repeat(65 * 1024),
        headers: { 'content-type': 'application/json' },
      })
    ).status,
    413,
  );
  assert.equal((await expectCall('POST', '/v1/webhooks', '/v1/webhooks', { key, raw: '{}' })).status, 415);
  const eventsOnly = await createOrgWithKey(base, { scopes: ['events:write', 'events:read'] });
  assert.equal((await expectCall('GET', '/v1/webhooks', '/v1/webhooks', { key: eventsOnly.key })).status, 403);
  assert.equal((await expectCall('GET', '/v1/webhooks', '/v1/webhooks')).status, 401);

  const list = await expectCall('GET', '/v1/webhooks', '/v1/webhooks', { key });
  assert.equal(list.body.webhooks.length, 2);
  assert.equal((await expectCall('GET', '/v1/webhooks/{id}', `/v1/webhooks/${id}`, { key })).status, 200);
  assert.equal(
    (await expectCall('GET', '/v1/webhooks/{id}', `/v1/webhooks/${id}`, { key: eventsOnly.key })).status,
    403,
  );
  assert.equal(
    (await expectCall('GET', '/v1/webhooks/{id}', `/v1/webhooks/${uuidv7(Date.now())}`, { key })).status,
    404,
  );
  const patched = await expectCall('PATCH', '/v1/webhooks/{id}', `/v1/webhooks/${id}`, {
    key,
    body: {
      enabled: false,
      rate_limit_per_sec: null,
      ordering: 'none',
      max_in_flight: null,
      description: null,
      event_types: null,
    },
  });
  assert.equal(patched.status, 200);
  assert.equal(typeof patched.body.disabled_reason, 'string');
  assert.equal(
    (
      await expectCall('PATCH', '/v1/webhooks/{id}', `/v1/webhooks/${id}`, {
        key,
        body: { enabled: 'yes', max_in_flight: 0 },
      })
    ).status,
    422,
  );
  assert.equal(
    (await expectCall('PATCH', '/v1/webhooks/{id}', `/v1/webhooks/${uuidv7(Date.now())}`, { key, body: {} })).status,
    404,
  );
  assert.equal((await expectCall('PUT', '/v1/webhooks/{id}', `/v1/webhooks/${id}`, { key, body: {} })).status, 405);

  const rotated = await expectCall('POST', '/v1/webhooks/{id}/rotate-secret', `/v1/webhooks/${id}/rotate-secret`, {
    key,
  });
  assert.equal(rotated.status, 200);
  assert.notEqual(rotated.body.secret, created.body.secret);
  assert.equal(
    (await expectCall('POST', '/v1/webhooks/{id}/rotate-secret', `/v1/webhooks/${id}/rotate-secret`, { key, body: {} }))
      .status,
    200,
  );
  assert.equal(
    (
      await expectCall('POST', '/v1/webhooks/{id}/rotate-secret', `/v1/webhooks/${uuidv7(Date.now())}/rotate-secret`, {
        key,
      })
    ).status,
    404,
  );

  const deliveries = await expectCall(
    'GET',
    '/v1/webhooks/{id}/deliveries',
    `/v1/webhooks/${id}/deliveries?status=failed&limit=10`,
    { key },
  );
  assert.equal(deliveries.status, 200);
  assert.equal(
    (
      await expectCall('GET', '/v1/webhooks/{id}/deliveries', `/v1/webhooks/${id}/deliveries?status=lost&limit=0`, {
        key,
      })
    ).status,
    422,
  );
  assert.equal(
    (await expectCall('GET', '/v1/webhooks/{id}/deliveries', `/v1/webhooks/${uuidv7(Date.now())}/deliveries`, { key }))
      .status,
    404,
  );

  const stats = await expectCall('GET', '/v1/webhooks/{id}/stats', `/v1/webhooks/${id}/stats?window=15m`, { key });
  assert.equal(stats.status, 200);
  assert.equal(stats.body.buckets.length, 15);
  assert.equal(
    (await expectCall('GET', '/v1/webhooks/{id}/stats', `/v1/webhooks/${id}/stats?window=2h`, { key })).status,
    422,
  );
  assert.equal(
    (await expectCall('GET', '/v1/webhooks/{id}/stats', `/v1/webhooks/${uuidv7(Date.now())}/stats`, { key })).status,
    404,
  );

  const recovered = await expectCall('POST', '/v1/webhooks/{id}/recover', `/v1/webhooks/${id}/recover`, {
    key,
    body: { since: '2026-01-01T00:00:00Z' },
  });
  assert.equal(recovered.status, 202);
  assert.equal(
    (
      await expectCall('POST', '/v1/webhooks/{id}/recover', `/v1/webhooks/${id}/recover`, {
        key,
        body: { since: 'yesterday' },
      })
    ).status,
    422,
  );
  assert.equal(
    (
      await expectCall('POST', '/v1/webhooks/{id}/recover', `/v1/webhooks/${uuidv7(Date.now())}/recover`, {
        key,
        body: { since: '2026-01-01T00:00:00Z' },
      })
    ).status,
    404,
  );

  assert.equal((await expectCall('DELETE', '/v1/webhooks/{id}', `/v1/webhooks/${id}`, { key })).status, 204);
  assert.equal((await expectCall('DELETE', '/v1/webhooks/{id}', `/v1/webhooks/${id}`, { key })).status, 404);
});

test('destinations: create, list, get, patch, rotate, deliveries, recover, delete, and their errors', async () => {
  const created = await expectCall('POST', '/v1/destinations', '/v1/destinations', {
    key,
    body: {
      type: 'rabbitmq',
      config: { url: 'amqp://triggers:hunter2@127.0.0.1:9/prod', exchange: 'events' },
      event_types: ['order.*'],
      ordering: 'key',
    },
  });
  assert.equal(created.status, 201, created.text);
  assert.match(created.body.secret, /^whsec_/);
  assert.equal(created.body.config.url, 'amqp://triggers:****@127.0.0.1:9/prod', 'the password is masked');
  assert.ok(!created.text.includes('hunter2'));
  const id = created.body.id as string;

  const invalid = await expectCall('POST', '/v1/destinations', '/v1/destinations', {
    key,
    body: { type: 'kafka', config: {} },
  });
  assert.equal(invalid.status, 422);
  assert.deepEqual(
    invalid.body.error.details.map((d: { field: string }) => d.field),
    ['type'],
  );
  const badConfig = await expectCall('POST', '/v1/destinations', '/v1/destinations', {
    key,
    body: { type: 'nats', config: { servers: ['http://127.0.0.1:4222'], subject: 'a.*', extra: 1 } },
  });
  assert.equal(badConfig.status, 422);
  assert.deepEqual(badConfig.body.error.details.map((d: { field: string }) => d.field).sort(), [
    'config.extra',
    'config.servers',
    'config.subject',
  ]);
  const notAllowed = await expectCall('POST', '/v1/destinations', '/v1/destinations', {
    key,
    body: { type: 'redis_stream', config: { url: 'redis://10.0.0.8:6379', stream: 's' } },
  });
  assert.equal(notAllowed.status, 422);
  assert.match(notAllowed.body.error.details[0].message, /10\.0\.0\.8:6379 is not in DESTINATION_ALLOWED_HOSTS/);

  const list = await expectCall('GET', '/v1/destinations', '/v1/destinations', { key });
  assert.equal(list.status, 200);
  assert.deepEqual(
    list.body.destinations.map((d: { id: string }) => d.id),
    [id],
  );
  assert.equal((await expectCall('GET', '/v1/destinations/{id}', `/v1/destinations/${id}`, { key })).status, 200);
  // A destination is not a webhook, and the reverse.
  assert.equal((await call(base, 'GET', `/v1/webhooks/${id}`, { key })).status, 404);
  assert.equal(
    (await expectCall('GET', '/v1/destinations/{id}', `/v1/destinations/${uuidv7(Date.now())}`, { key })).status,
    404,
  );

  const patched = await expectCall('PATCH', '/v1/destinations/{id}', `/v1/destinations/${id}`, {
    key,
    body: { config: { routing_key: 'all' }, enabled: false },
  });
  assert.equal(patched.status, 200, patched.text);
  assert.deepEqual(patched.body.config, {
    url: 'amqp://triggers:****@127.0.0.1:9/prod',
    exchange: 'events',
    routing_key: 'all',
  });
  assert.equal(patched.body.enabled, false);
  const typeChange = await expectCall('PATCH', '/v1/destinations/{id}', `/v1/destinations/${id}`, {
    key,
    body: { type: 'nats' },
  });
  assert.equal(typeChange.status, 422);
  assert.equal(typeChange.body.error.details[0].field, 'type');

  const rotated = await expectCall(
    'POST',
    '/v1/destinations/{id}/rotate-secret',
    `/v1/destinations/${id}/rotate-secret`,
    { key, body: {} },
  );
  assert.equal(rotated.status, 200);
  assert.notEqual(rotated.body.secret, created.body.secret);
  const deliveries = await expectCall(
    'GET',
    '/v1/destinations/{id}/deliveries',
    `/v1/destinations/${id}/deliveries?limit=10`,
    { key },
  );
  assert.equal(deliveries.status, 200);
  const stats = await expectCall('GET', '/v1/destinations/{id}/stats', `/v1/destinations/${id}/stats`, { key });
  assert.equal(stats.status, 200);
  assert.equal(stats.body.buckets.length, 60);
  assert.equal(
    (await expectCall('GET', '/v1/destinations/{id}/stats', `/v1/destinations/${id}/stats?window=7d`, { key })).status,
    422,
  );
  const recovered = await expectCall('POST', '/v1/destinations/{id}/recover', `/v1/destinations/${id}/recover`, {
    key,
    body: { since: '2026-01-01T00:00:00Z' },
  });
  assert.equal(recovered.status, 202);
  assert.equal((await expectCall('DELETE', '/v1/destinations/{id}', `/v1/destinations/${id}`, { key })).status, 204);
  assert.equal((await expectCall('DELETE', '/v1/destinations/{id}', `/v1/destinations/${id}`, { key })).status, 404);
});

test('webhook deliveries with real attempts (a failing receiver, a refused connection), then recover', async () => {
  const sender = await createOrgWithKey(base);
  const failing = await Receiver.start(() => ({ status: 500 }));
  receivers.push(failing);
  const at = cluster.url;
  const answering = await expectCall(
    'POST',
    '/v1/webhooks',
    '/v1/webhooks',
    { key: sender.key, body: { url: failing.url } },
    at,
  );
  const refused = await expectCall(
    'POST',
    '/v1/webhooks',
    '/v1/webhooks',
    { key: sender.key, body: { url: 'http://127.0.0.1:1/hook' } },
    at,
  );
  await expectCall(
    'POST',
    '/v1/events',
    '/v1/events',
    { key: sender.key, body: { type: 'delivered.event', payload: {} } },
    at,
  );

  for (const endpoint of [answering.body.id, refused.body.id]) {
    const dead = await waitFor('a dead delivery', async () => {
      const page = await call(at, 'GET', `/v1/webhooks/${endpoint}/deliveries`, { key: sender.key });
      return page.body.deliveries[0]?.status === 'dead' ? page : null;
    });
    checker.expectMatches('GET', '/v1/webhooks/{id}/deliveries', dead);
    const attempts = dead.body.deliveries[0].attempts;
    assert.equal(attempts.length, 2);
    assert.equal(attempts[0].response_status, endpoint === answering.body.id ? 500 : null);
    // The stats of those attempts: counts, lag and latency filled in (schema-checked).
    const stats = await expectCall(
      'GET',
      '/v1/webhooks/{id}/stats',
      `/v1/webhooks/${endpoint}/stats?window=15m`,
      { key: sender.key },
      at,
    );
    assert.deepEqual(
      [stats.body.totals.failed, stats.body.totals.dead, stats.body.totals.first_attempts],
      [1, 1, 1],
      stats.text,
    );
    assert.notEqual(stats.body.totals.lag_ms_avg, null);
    const recovered = await expectCall(
      'POST',
      '/v1/webhooks/{id}/recover',
      `/v1/webhooks/${endpoint}/recover`,
      { key: sender.key, body: { since: '2026-01-01T00:00:00Z' } },
      at,
    );
    assert.equal(recovered.body.queued, 1);
  }
});

test('event types: put, list, get, delete, events checked against them, and their errors', async () => {
  const { key: manager } = await createOrgWithKey(base);
  const T = '/v1/event-types';
  const schema = { type: 'object', required: ['amount'], properties: { amount: { type: 'number' } } };
  assert.equal(
    (await expectCall('PUT', `${T}/{type}`, `${T}/docs.paid`, { key: manager, body: { schema, description: 'docs' } }))
      .status,
    201,
  );
  assert.equal(
    (await expectCall('PUT', `${T}/{type}`, `${T}/docs.paid`, { key: manager, body: { schema, deprecated: true } }))
      .status,
    200,
  );
  assert.equal(
    (await expectCall('PUT', `${T}/{type}`, `${T}/docs.paid`, { key: manager, body: { schema: { type: 'nope' } } }))
      .status,
    422,
  );
  assert.equal(
    (
      await expectCall('PUT', `${T}/{type}`, `${T}/docs.paid`, {
        key: manager,
        raw: '{',
        headers: { 'content-type': 'application/json' },
      })
    ).status,
    400,
  );
  assert.equal((await expectCall('GET', T, T, { key: manager })).body.event_types.length, 1);
  assert.equal((await expectCall('GET', `${T}/{type}`, `${T}/docs.paid`, { key: manager })).body.version, 2);
  assert.equal((await expectCall('GET', `${T}/{type}`, `${T}/docs.none`, { key: manager })).status, 404);
  const refused = await expectCall('POST', '/v1/events', '/v1/events', {
    key: manager,
    body: { type: 'docs.paid', payload: { amount: 'ten' }, ordering_key: 'k1' },
  });
  assert.equal(refused.status, 422);
  assert.deepEqual(refused.body.error.details, [{ field: '/payload/amount', message: 'must be number' }]);
  const stored = await expectCall('POST', '/v1/events', '/v1/events', {
    key: manager,
    body: { type: 'docs.paid', payload: { amount: 1 }, ordering_key: 'k1' },
  });
  assert.equal(stored.status, 202);
  const shown = await expectCall('GET', '/v1/events/{id}', `/v1/events/${stored.body.id}`, { key: manager });
  assert.deepEqual([shown.body.schema_version, shown.body.ordering_key], [2, 'k1']);
  const noScope = await createOrgWithKey(base, { scopes: ['events:write'] });
  assert.equal((await expectCall('GET', T, T, { key: noScope.key })).status, 403);
  assert.equal((await expectCall('POST', `${T}/{type}`, `${T}/docs.paid`, { key: manager, body: {} })).status, 405);
  assert.equal((await expectCall('DELETE', `${T}/{type}`, `${T}/docs.paid`, { key: manager })).status, 204);
  assert.equal((await expectCall('DELETE', `${T}/{type}`, `${T}/docs.paid`, { key: manager })).status, 404);
});

test('admin: orgs and keys, with their errors', async () => {
  const org = await expectCall('POST', '/v1/admin/orgs', '/v1/admin/orgs', {
    admin: true,
    body: { name: 'acme', rate_limit_per_sec: 50 },
  });
  assert.equal(org.status, 201);
  assert.equal(org.body.burst, 100);
  const id = org.body.id as string;
  assert.equal(
    (
      await expectCall('POST', '/v1/admin/orgs', '/v1/admin/orgs', {
        admin: true,
        body: { name: '', burst: 0, tenant: 1 },
      })
    ).status,
    422,
  );
  assert.equal((await expectCall('POST', '/v1/admin/orgs', '/v1/admin/orgs', { body: { name: 'x' } })).status, 401);
  assert.equal(
    (await expectCall('POST', '/v1/admin/orgs', '/v1/admin/orgs', { key, body: { name: 'x' } })).status,
    401,
    'an API key is not the admin token',
  );
  assert.equal(
    (
      await expectCall('POST', '/v1/admin/orgs', '/v1/admin/orgs', {
        admin: true,
        raw: '{',
        headers: { 'content-type': 'application/json' },
      })
    ).status,
    400,
  );
  assert.equal(
    (
      await expectCall('POST', '/v1/admin/orgs', '/v1/admin/orgs', {
        admin: true,
        raw: '{}',
        headers: { 'content-type': 'text/plain' },
      })
    ).status,
    415,
  );
  assert.equal((await expectCall('GET', '/v1/admin/orgs', '/v1/admin/orgs', { admin: true })).status, 405);

  assert.equal((await expectCall('GET', '/v1/admin/orgs/{id}', `/v1/admin/orgs/${id}`, { admin: true })).status, 200);
  assert.equal(
    (await expectCall('GET', '/v1/admin/orgs/{id}', `/v1/admin/orgs/${uuidv7(Date.now())}`, { admin: true })).status,
    404,
  );
  assert.equal(
    (await expectCall('PATCH', '/v1/admin/orgs/{id}', `/v1/admin/orgs/${id}`, { admin: true, body: { burst: 500 } }))
      .body.burst,
    500,
  );
  assert.equal(
    (
      await expectCall('PATCH', '/v1/admin/orgs/{id}', `/v1/admin/orgs/${id}`, {
        admin: true,
        body: { rate_limit_per_sec: 10_000_001 },
      })
    ).status,
    422,
  );
  assert.equal(
    (
      await expectCall('PATCH', '/v1/admin/orgs/{id}', `/v1/admin/orgs/${uuidv7(Date.now())}`, {
        admin: true,
        body: {},
      })
    ).status,
    404,
  );

  const allScopes = await expectCall('POST', '/v1/admin/orgs/{id}/keys', `/v1/admin/orgs/${id}/keys`, { admin: true });
  assert.equal(allScopes.status, 201);
  assert.equal(allScopes.body.scopes.length, 4);
  const testKey = await expectCall('POST', '/v1/admin/orgs/{id}/keys', `/v1/admin/orgs/${id}/keys`, {
    admin: true,
    body: { name: 'ci', scopes: ['events:read'], env: 'test' },
  });
  assert.match(testKey.body.key, /^zt_test_/);
  assert.equal(
    (
      await expectCall('POST', '/v1/admin/orgs/{id}/keys', `/v1/admin/orgs/${id}/keys`, {
        admin: true,
        body: { scopes: ['all'], env: 'prod' },
      })
    ).status,
    422,
  );
  assert.equal(
    (await expectCall('POST', '/v1/admin/orgs/{id}/keys', `/v1/admin/orgs/${uuidv7(Date.now())}/keys`, { admin: true }))
      .status,
    404,
  );
  const keys = await expectCall('GET', '/v1/admin/orgs/{id}/keys', `/v1/admin/orgs/${id}/keys`, { admin: true });
  assert.equal(keys.body.keys.length, 2);
  assert.equal(
    (await expectCall('GET', '/v1/admin/orgs/{id}/keys', `/v1/admin/orgs/${uuidv7(Date.now())}/keys`, { admin: true }))
      .status,
    404,
  );

  const revoked = await expectCall('DELETE', '/v1/admin/keys/{id}', `/v1/admin/keys/${testKey.body.id}`, {
    admin: true,
  });
  assert.equal(typeof revoked.body.revoked_at, 'string');
  assert.equal(
    (await expectCall('DELETE', '/v1/admin/keys/{id}', `/v1/admin/keys/${uuidv7(Date.now())}`, { admin: true })).status,
    404,
  );
  assert.equal(
    (await expectCall('GET', '/v1/admin/keys/{id}', `/v1/admin/keys/${keyId}`, { admin: true })).status,
    405,
  );

  // The cluster runs without ADMIN_TOKEN: the admin API is not there.
  const disabled = await expectCall(
    'GET',
    '/v1/admin/orgs/{id}',
    `/v1/admin/orgs/${orgId}`,
    { admin: true },
    cluster.url,
  );
  assert.equal(disabled.status, 404);
});

test('operations: /status, /metrics (open, guarded, unavailable), unknown paths', async () => {
  const status = await expectCall('GET', '/status', '/status');
  assert.deepEqual([status.status, status.body.status, status.body.checks.redis], [200, 'ok', 'disabled']);
  assert.equal((await expectCall('POST', '/status', '/status')).status, 405);

  // In-process there is no primary to aggregate the workers' metrics: 503.
  assert.equal((await expectCall('GET', '/metrics', '/metrics')).status, 503);
  const metrics = await expectCall(
    'GET',
    '/metrics',
    '/metrics',
    { headers: { authorization: `Bearer ${METRICS_TOKEN}` } },
    cluster.url,
  );
  assert.equal(metrics.status, 200);
  assert.match(metrics.text, /^# HELP /m);
  assert.equal((await expectCall('GET', '/metrics', '/metrics', {}, cluster.url)).status, 401);
  assert.equal((await expectCall('DELETE', '/openapi.json', '/openapi.json')).status, 405);

  // The console's page and files (API.md §9) and the key route it signs in with.
  const page = await expectCall('GET', '/console', '/console');
  assert.equal(page.status, 200);
  const script = /src="\/console\/assets\/([^"]+\.js)"/.exec(page.text)?.[1];
  assert.ok(script, page.text);
  assert.equal((await expectCall('GET', '/console/assets/{file}', `/console/assets/${script}`)).status, 200);
  assert.equal((await expectCall('GET', '/console/assets/{file}', '/console/assets/none.js')).status, 404);
  assert.equal((await expectCall('GET', '/v1/key', '/v1/key', { key })).status, 200);
  assert.equal((await expectCall('GET', '/v1/key', '/v1/key', { key: UNKNOWN_API_KEY })).status, 401);

  checker.expectUnknownPathAnswer(await call(base, 'GET', '/v2/nothing'));
  checker.expectUnknownPathAnswer(await call(base, 'POST', '/v1/events/batch/more', { key, body: {} }));
});

test('every operation was seen answering a documented success', () => {
  for (const [template, item] of Object.entries(
    checker.document.paths as Record<string, Record<string, { responses: object }>>,
  )) {
    for (const [method, operation] of Object.entries(item)) {
      const successes = Object.keys(operation.responses).filter((status) => status.startsWith('2'));
      const seen = successes.some((status) => checker.seen.has(`${method.toUpperCase()} ${template} ${status}`));
      assert.ok(seen, `${method.toUpperCase()} ${template}: no ${successes.join('/')} checked`);
    }
  }
});

test('with Postgres down: /status is 503 degraded and ingest 503 unavailable, both as documented', async () => {
  await pg.pause();
  try {
    // /status answers from a probe up to 1 s old (SharedProbe in src/ops/status.ts): wait for a fresh one.
    let status!: ApiResponse;
    await waitFor(
      '/status to see Postgres down',
      async () => {
        status = await expectCall('GET', '/status', '/status');
        return status.status === 503;
      },
      10_000,
      100,
    );
    assert.deepEqual([status.status, status.body.status, status.body.checks.postgres], [503, 'degraded', 'down']);
    const refused = await expectCall('POST', '/v1/events', '/v1/events', { key, body: { type: 'a', payload: {} } });
    assert.equal(refused.status, 503);
  } finally {
    await pg.resume();
  }
});
