import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RawRequest } from './helpers/raw-http.js';
import { call, createOrgWithKey, sendEvent } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { TestServer } from './helpers/server.js';
import { Receiver, waitFor } from './webhooks-receiver.js';

/**
 * Event types (API.md §3b) against the real server, two HTTP workers: registering schemas, the
 * check before the 202 for single events and batch items, require_event_types, schema_version on
 * webhook deliveries and consumer-group messages, ordering_key, tenancy and scopes. One server for
 * the file; fresh orgs per test. The hostile schemas and the propagation across nodes are in
 * event-types-hostile.test.ts and event-types-nodes.test.ts (the extended set).
 */

let pg: TestPostgres;
let server: TestServer;
let base: string;
const receivers: Receiver[] = [];

const ORDER_SCHEMA = {
  type: 'object',
  required: ['order_id', 'amount', 'currency'],
  properties: {
    order_id: { type: 'string', minLength: 1 },
    amount: { type: 'number', minimum: 0 },
    currency: { enum: ['EUR', 'USD'] },
    email: { type: 'string', format: 'email' },
    lines: {
      type: 'array',
      items: { type: 'object', required: ['sku'], properties: { sku: { type: 'string', pattern: '^[A-Z]{3}-\\d+$' } } },
    },
  },
  additionalProperties: false,
};
const GOOD = { order_id: 'o-1', amount: 12.5, currency: 'EUR' };
const MAX_TYPES = 6;

before(async () => {
  pg = await TestPostgres.shared();
  server = await TestServer.start({
    databaseUrl: await pg.createDatabase('event_types'),
    workers: 2,
    env: {
      WEBHOOK_ALLOW_HTTP: 'true',
      WEBHOOK_ALLOW_PRIVATE: 'true',
      WEBHOOK_RETRY_SCHEDULE: '200ms',
      EVENT_TYPES_MAX_PER_ORG: String(MAX_TYPES),
    },
  });
  base = server.url;
});

after(async () => {
  if (process.env.SHOW_SERVER_OUTPUT) console.log(server?.output);
  for (const receiver of receivers) await receiver.close();
  await server?.stop();
  await pg?.stop();
});

function putType(key: string, type: string, body: unknown) {
  return call(base, 'PUT', `/v1/event-types/${type}`, { key, body });
}

/** Both HTTP workers answer from their own registry: send until each connection has seen it. */
async function everyWorker<T>(times: number, request: () => Promise<T>): Promise<T[]> {
  const answers: T[] = [];
  for (let i = 0; i < times; i++) answers.push(await request());
  return answers;
}

describe('registering event types', () => {
  test('PUT creates (201, version 1), an identical PUT keeps the version (200), a change raises it; GET, list and DELETE', async () => {
    const { key } = await createOrgWithKey(base);
    const created = await putType(key, 'order.paid', { schema: ORDER_SCHEMA, description: 'An order was paid.' });
    assert.equal(created.status, 201, created.text);
    assert.equal(created.body.type, 'order.paid');
    assert.equal(created.body.version, 1);
    assert.equal(created.body.deprecated, false);
    assert.equal(created.body.description, 'An order was paid.');
    assert.deepEqual(created.body.schema, ORDER_SCHEMA);
    assert.match(created.body.created_at, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    // The schema comes back as sent, key order included.
    assert.ok(created.text.includes(JSON.stringify(ORDER_SCHEMA)), 'schema returned verbatim');

    const same = await putType(key, 'order.paid', { schema: ORDER_SCHEMA, description: 'An order was paid.' });
    assert.equal(same.status, 200, same.text);
    assert.equal(same.body.version, 1, 'nothing changed: version kept');

    const deprecated = await putType(key, 'order.paid', {
      schema: ORDER_SCHEMA,
      description: 'An order was paid.',
      deprecated: true,
    });
    assert.equal(deprecated.status, 200);
    assert.equal(deprecated.body.version, 2);
    assert.equal(deprecated.body.deprecated, true);
    const changed = await putType(key, 'order.paid', { schema: { ...ORDER_SCHEMA, required: ['order_id'] } });
    assert.equal(changed.body.version, 3);
    assert.equal(changed.body.description, null, 'PUT replaces: an omitted description is cleared');

    assert.equal((await putType(key, 'user.signup', { schema: { type: 'object' } })).status, 201);
    const list = await call(base, 'GET', '/v1/event-types', { key });
    assert.equal(list.status, 200);
    assert.deepEqual(
      list.body.event_types.map((type: { type: string }) => type.type),
      ['order.paid', 'user.signup'],
    );
    const one = await call(base, 'GET', '/v1/event-types/order.paid', { key });
    assert.equal(one.status, 200);
    assert.equal(one.body.version, 3);

    assert.equal((await call(base, 'DELETE', '/v1/event-types/user.signup', { key })).status, 204);
    assert.equal((await call(base, 'GET', '/v1/event-types/user.signup', { key })).status, 404);
    assert.equal((await call(base, 'DELETE', '/v1/event-types/user.signup', { key })).status, 404);
    const again = await putType(key, 'user.signup', { schema: { type: 'object', required: ['id'] } });
    assert.equal(again.status, 201);
    assert.equal(again.body.version, 1, 'registered again: starts at 1');
  });

  test('bad input is 422 naming the field: the type, unknown fields, a schema that is not JSON Schema 2020-12, over 64 KiB, or a $ref outside itself', async () => {
    const { key } = await createOrgWithKey(base);
    const fieldsOf = (response: { body: any }) =>
      response.body.error.details.map((detail: { field: string }) => detail.field);
    const badType = await putType(key, 'bad%20type', { schema: { type: 'object' } });
    assert.equal(badType.status, 422, badType.text);
    assert.deepEqual(fieldsOf(badType), ['type']);

    // `..` cannot travel in a URL through fetch (it resolves the segment away): sent by hand.
    for (const dots of ['.', '..']) {
      const raw = await RawRequest.send(
        server.port,
        {
          method: 'PUT',
          path: `/v1/event-types/${dots}`,
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          contentLength: Buffer.byteLength('{"schema":{}}'),
        },
        '{"schema":{}}',
      );
      const answer = await raw.response(5_000);
      raw.abort();
      assert.equal(answer?.status, 422, JSON.stringify(answer));
      assert.deepEqual(fieldsOf(answer!), ['type']);
    }

    const unknown = await putType(key, 't1', { schema: { type: 'object' }, colour: 'red' });
    assert.equal(unknown.status, 422);
    assert.deepEqual(fieldsOf(unknown), ['colour']);
    assert.deepEqual(fieldsOf(await putType(key, 't1', {})), ['schema']);
    assert.deepEqual(fieldsOf(await putType(key, 't1', { schema: 'object' })), ['schema']);

    const notSchema = await putType(key, 't1', { schema: { type: 'strin', properties: { a: { minimum: 'ten' } } } });
    assert.equal(notSchema.status, 422, notSchema.text);
    assert.equal(notSchema.body.error.code, 'validation_failed');
    assert.ok(
      fieldsOf(notSchema).some((field: string) => field.startsWith('/schema')),
      notSchema.text,
    );

    const huge = await putType(key, 't1', { schema: { type: 'object', description: 'x'.repeat(70 * 1024) } });
    assert.equal(huge.status, 422, 'over 64 KiB is 422, not 413');
    assert.deepEqual(fieldsOf(huge), ['schema']);

    const remote = await putType(key, 't1', {
      schema: { type: 'object', properties: { a: { $ref: 'https://example.com/schema.json' } } },
    });
    assert.equal(remote.status, 422);
    assert.deepEqual(fieldsOf(remote), ['/schema/properties/a/$ref']);
    const unresolved = await putType(key, 't1', { schema: { $ref: '#/$defs/missing' } });
    assert.equal(unresolved.status, 422, unresolved.text);
    assert.deepEqual(fieldsOf(unresolved), ['schema']);

    const local = await putType(key, 't1', {
      schema: { $defs: { amount: { type: 'number' } }, type: 'object', properties: { a: { $ref: '#/$defs/amount' } } },
    });
    assert.equal(local.status, 201, 'a $ref inside the schema is fine: ' + local.text);
    assert.equal((await call(base, 'GET', '/v1/event-types/t2', { key })).status, 404);
  });

  test(`an org has at most EVENT_TYPES_MAX_PER_ORG (${MAX_TYPES}) types: one more is 409, replacing one is not`, async () => {
    const { key } = await createOrgWithKey(base);
    const made = await Promise.all(
      Array.from({ length: MAX_TYPES + 3 }, (_, i) => putType(key, `cap.t${i}`, { schema: { type: 'object' } })),
    );
    assert.equal(
      made.filter((answer) => answer.status === 201).length,
      MAX_TYPES,
      made.map((answer) => answer.status).join(','),
    );
    assert.equal(made.filter((answer) => answer.status === 409).length, 3);
    const kept = (await call(base, 'GET', '/v1/event-types', { key })).body.event_types as Array<{ type: string }>;
    assert.equal(kept.length, MAX_TYPES);
    assert.equal((await putType(key, kept[0]!.type, { schema: { type: 'object', required: ['a'] } })).status, 200);
  });

  test("the routes need the event_types:manage scope, and one org never sees another's types", async () => {
    const writer = await createOrgWithKey(base, { scopes: ['events:write', 'events:read', 'webhooks:manage'] });
    const forbidden = await putType(writer.key, 'a.b', { schema: { type: 'object' } });
    assert.equal(forbidden.status, 403);
    assert.equal((await call(base, 'GET', '/v1/event-types', { key: writer.key })).status, 403);

    const a = await createOrgWithKey(base);
    const b = await createOrgWithKey(base);
    assert.equal((await putType(a.key, 'shared.name', { schema: { type: 'object', required: ['x'] } })).status, 201);
    assert.equal((await call(base, 'GET', '/v1/event-types/shared.name', { key: b.key })).status, 404);
    assert.deepEqual((await call(base, 'GET', '/v1/event-types', { key: b.key })).body.event_types, []);
    assert.equal((await call(base, 'DELETE', '/v1/event-types/shared.name', { key: b.key })).status, 404);
    // Org B's events of the same type name are not checked against org A's schema.
    assert.equal((await sendEvent(base, b.key, { type: 'shared.name', payload: {} })).status, 202);
    assert.equal((await sendEvent(base, a.key, { type: 'shared.name', payload: {} })).status, 422);
  });
});

describe('events checked before the 202', () => {
  test('a payload that does not validate is 422 with each failure as a JSON pointer; nothing is stored', async () => {
    const { key } = await createOrgWithKey(base);
    assert.equal((await putType(key, 'order.paid', { schema: ORDER_SCHEMA })).status, 201);
    const good = await sendEvent(base, key, { type: 'order.paid', payload: GOOD });
    assert.equal(good.status, 202, good.text);

    const bad = await sendEvent(base, key, {
      type: 'order.paid',
      payload: {
        amount: -1,
        currency: 'JPY',
        email: 'not-an-email',
        extra: 1,
        lines: [{ sku: 'ABC-1' }, { sku: 'nope' }],
      },
      dedup_id: 'refused-1',
    });
    assert.equal(bad.status, 422, bad.text);
    assert.equal(bad.body.error.code, 'validation_failed');
    const byField = Object.fromEntries(
      bad.body.error.details.map((detail: { field: string; message: string }) => [detail.field, detail.message]),
    );
    for (const field of [
      '/payload/order_id',
      '/payload/amount',
      '/payload/currency',
      '/payload/email',
      '/payload/extra',
      '/payload/lines/1/sku',
    ]) {
      assert.ok(field in byField, `${field} named in ${bad.text}`);
    }
    assert.equal(byField['/payload/order_id'], 'is required');
    assert.equal(bad.body.error.request_id, bad.headers.get('x-request-id'));

    // Refused before anything was stored: the same dedup_id with a good payload is a new event.
    const retried = await sendEvent(base, key, { type: 'order.paid', payload: GOOD, dedup_id: 'refused-1' });
    assert.equal(retried.status, 202, retried.text);
    const inbox = await call(base, 'GET', '/v1/inbox?limit=100', { key });
    assert.equal(inbox.body.events.length, 2);
    // Types without a schema are accepted as before.
    assert.equal((await sendEvent(base, key, { type: 'anything.else', payload: { free: 'form' } })).status, 202);
  });

  test('patterns and formats are not run on very long strings: those fail, saying why', async () => {
    const { key } = await createOrgWithKey(base);
    const schema = {
      type: 'object',
      properties: { code: { type: 'string', pattern: '^[a-z]+$' }, email: { type: 'string', format: 'email' } },
    };
    assert.equal((await putType(key, 'long.strings', { schema })).status, 201);
    assert.equal(
      (
        await sendEvent(base, key, {
          type: 'long.strings',
          payload: { code: 'a'.repeat(1024), email: 'a'.repeat(2000) + '@example.com' },
        })
      ).status,
      202,
    );
    const long = await sendEvent(base, key, {
      type: 'long.strings',
      payload: { code: 'a'.repeat(1025), email: 'a'.repeat(2040) + '@example.com' },
    });
    assert.equal(long.status, 422, long.text);
    assert.deepEqual(long.body.error.details, [
      { field: '/payload/code', message: 'is longer than 1024 characters, the most a pattern is matched against' },
      { field: '/payload/email', message: 'is longer than 2048 characters, the most a format is checked on' },
    ]);
  });

  test('in a batch only the failing items are rejected, each with pointers into the item', async () => {
    const { key } = await createOrgWithKey(base);
    assert.equal((await putType(key, 'order.paid', { schema: ORDER_SCHEMA })).status, 201);
    const batch = await call(base, 'POST', '/v1/events/batch', {
      key,
      body: {
        events: [
          { type: 'order.paid', payload: GOOD },
          { type: 'order.paid', payload: { ...GOOD, amount: 'ten' } },
          { type: 'no.schema', payload: { a: 1 } },
          { type: 'order.paid', payload: { ...GOOD, currency: 'XXX' } },
          { type: 'order.paid', payload: GOOD, occurred_at: 'yesterday' },
        ],
      },
    });
    assert.equal(batch.status, 200, batch.text);
    assert.equal(batch.body.accepted, 2);
    assert.equal(batch.body.rejected, 3);
    const statuses = batch.body.results.map((result: { status: string }) => result.status);
    assert.deepEqual(statuses, ['accepted', 'rejected', 'accepted', 'rejected', 'rejected']);
    assert.deepEqual(batch.body.results[1].error.details, [{ field: '/payload/amount', message: 'must be number' }]);
    assert.equal(batch.body.results[3].error.details[0].field, '/payload/currency');
    assert.equal(batch.body.results[4].error.details[0].field, 'occurred_at');
  });

  test("a changed schema applies from the PUT's answer on (both workers), and a deleted one stops applying", async () => {
    const { key } = await createOrgWithKey(base);
    assert.equal((await putType(key, 'user.signup', { schema: { type: 'object' } })).status, 201);
    for (const answer of await everyWorker(6, () =>
      sendEvent(base, key, { type: 'user.signup', payload: { name: 'x' } }),
    ))
      assert.equal(answer.status, 202);
    assert.equal((await putType(key, 'user.signup', { schema: { type: 'object', required: ['email'] } })).status, 200);
    // API.md §3b: on every process within 2 s; the one that answered the PUT at once.
    await waitFor(
      'both workers refuse the old shape',
      async () => {
        const answers = await everyWorker(6, () =>
          sendEvent(base, key, { type: 'user.signup', payload: { name: 'x' } }),
        );
        return answers.every((answer) => answer.status === 422);
      },
      2_000,
      20,
    );
    assert.equal((await call(base, 'DELETE', '/v1/event-types/user.signup', { key })).status, 204);
    await waitFor(
      'both workers accept it again',
      async () => {
        const answers = await everyWorker(6, () =>
          sendEvent(base, key, { type: 'user.signup', payload: { name: 'x' } }),
        );
        return answers.every((answer) => answer.status === 202);
      },
      2_000,
      20,
    );
  });

  test('require_event_types: an event whose type has no schema is 422 (field "type"), set and cleared by the admin PATCH', async () => {
    const { key, orgId } = await createOrgWithKey(base);
    assert.equal((await putType(key, 'known.type', { schema: { type: 'object' } })).status, 201);
    const org = await call(base, 'GET', `/v1/admin/orgs/${orgId}`, { admin: true });
    assert.equal(org.body.require_event_types, false, 'default false');
    const patched = await call(base, 'PATCH', `/v1/admin/orgs/${orgId}`, {
      admin: true,
      body: { require_event_types: true },
    });
    assert.equal(patched.status, 200, patched.text);
    assert.equal(patched.body.require_event_types, true);
    await waitFor(
      'unknown types refused everywhere',
      async () => {
        const answers = await everyWorker(6, () => sendEvent(base, key, { type: 'unknown.type', payload: {} }));
        return answers.every((answer) => answer.status === 422 && answer.body.error.details[0].field === 'type');
      },
      2_000,
      20,
    );
    assert.equal((await sendEvent(base, key, { type: 'known.type', payload: {} })).status, 202);
    const batch = await call(base, 'POST', '/v1/events/batch', {
      key,
      body: {
        events: [
          { type: 'known.type', payload: {} },
          { type: 'unknown.type', payload: {} },
        ],
      },
    });
    assert.deepEqual(
      batch.body.results.map((result: { status: string }) => result.status),
      ['accepted', 'rejected'],
    );
    assert.equal(batch.body.results[1].error.details[0].field, 'type');

    const bad = await call(base, 'PATCH', `/v1/admin/orgs/${orgId}`, {
      admin: true,
      body: { require_event_types: 'yes' },
    });
    assert.equal(bad.status, 422);
    assert.equal(bad.body.error.details[0].field, 'require_event_types');
    assert.equal(
      (await call(base, 'PATCH', `/v1/admin/orgs/${orgId}`, { admin: true, body: { require_event_types: false } }))
        .status,
      200,
    );
    await waitFor(
      'unknown types accepted again',
      async () => {
        const answers = await everyWorker(6, () => sendEvent(base, key, { type: 'unknown.type', payload: {} }));
        return answers.every((answer) => answer.status === 202);
      },
      2_000,
      20,
    );
  });
});

describe('schema_version and ordering_key', () => {
  test('webhook deliveries carry schema_version at top level for typed events, none for untyped ones', async () => {
    const { key } = await createOrgWithKey(base);
    const receiver = await Receiver.start();
    receivers.push(receiver);
    const hook = await call(base, 'POST', '/v1/webhooks', { key, body: { url: receiver.url } });
    assert.equal(hook.status, 201, hook.text);
    await putType(key, 'order.paid', { schema: ORDER_SCHEMA });
    await putType(key, 'order.paid', { schema: ORDER_SCHEMA, deprecated: true });
    // Version 2 applies at once on the worker that answered the PUT, on the other within 2 s (API.md §3b).
    await new Promise((resolve) => setTimeout(resolve, 2_100));
    const typed = await sendEvent(base, key, { type: 'order.paid', payload: GOOD });
    const untyped = await sendEvent(base, key, { type: 'plain', payload: {} });
    assert.equal(typed.status, 202);
    assert.equal(untyped.status, 202);
    await waitFor('both delivered', () => receiver.ids().has(typed.body.id) && receiver.ids().has(untyped.body.id));
    const bodyOf = (id: string) =>
      JSON.parse(receiver.requests.find((request) => request.headers['webhook-id'] === id)!.body);
    assert.equal(bodyOf(typed.body.id).schema_version, 2);
    assert.equal('schema_version' in bodyOf(untyped.body.id), false);
  });

  test('consumer-group messages carry schema_version in `event`; ordering_key is validated, stored and returned by GET /v1/events/{id}', async () => {
    const { key } = await createOrgWithKey(base);
    assert.equal(
      (await call(base, 'POST', '/v1/consumer-groups', { key, body: { name: 'g', start: 'earliest' } })).status,
      201,
    );
    await putType(key, 'order.paid', { schema: ORDER_SCHEMA });
    // The PUT reached one HTTP worker; the other learns it within 2 s (API.md §3b), and the event
    // may go to it (seen under load: an event stored without schema_version).
    await new Promise((resolve) => setTimeout(resolve, 2_100));
    const typed = await sendEvent(base, key, { type: 'order.paid', payload: GOOD, ordering_key: 'order-42' });
    assert.equal(typed.status, 202, typed.text);
    const batch = await call(base, 'POST', '/v1/events/batch', {
      key,
      body: { events: [{ type: 'plain', payload: {}, ordering_key: 'k', dedup_id: 'd1' }] },
    });
    assert.equal(batch.body.accepted, 1, batch.text);
    const received = await call(base, 'POST', '/v1/consumer-groups/g/receive', { key, body: { max: 10 } });
    assert.equal(received.status, 200, received.text);
    const events = received.body.messages.map((message: { event: Record<string, unknown> }) => message.event);
    assert.equal(events.length, 2);
    assert.equal(events[0].schema_version, 1);
    assert.equal('schema_version' in events[1], false);

    const shown = await call(base, 'GET', `/v1/events/${typed.body.id}`, { key });
    assert.equal(shown.body.ordering_key, 'order-42');
    assert.equal(shown.body.schema_version, 1);
    const other = await call(base, 'GET', `/v1/events/${batch.body.results[0].id}`, { key });
    assert.equal(other.body.ordering_key, 'k', 'stored through the dedup flush too');

    for (const orderingKey of ['', 'x'.repeat(257), 5, 'nul\u0000']) {
      const refused = await sendEvent(base, key, { type: 'plain', payload: {}, ordering_key: orderingKey });
      assert.equal(refused.status, 422, JSON.stringify(orderingKey));
      assert.equal(refused.body.error.details[0].field, 'ordering_key');
    }
    assert.equal(
      (await sendEvent(base, key, { type: 'plain', payload: {}, ordering_key: 'x'.repeat(256) })).status,
      202,
    );
  });
});
