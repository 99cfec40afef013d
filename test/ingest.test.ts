import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Sql } from '../src/db/connect.js';
import { call, createOrgWithKey, sendEvent } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { InProcessServer } from './helpers/in-process.js';

let pg: TestPostgres;
let server: InProcessServer;
let db: Sql;
let base: string;
let key: string;
let orgId: string;

const servers: InProcessServer[] = [];
const pools: Sql[] = [];

before(async () => {
  pg = await TestPostgres.shared();
});

// Servers stop at the end of the file, not of their describe: InProcessServer.stop closes fetch's
// global dispatcher, which the second setting's requests still need.
after(async () => {
  for (const pool of pools) await pool.end({ timeout: 1 });
  for (const started of servers) await started.stop();
  await pg?.stop();
});

// Every flow runs under both INGEST_COPY_CLIENT settings: the firehose COPY through our own wire
// connections (the default) and through the `postgres` client (the fallback).
for (const copyClient of ['wire', 'postgres']) {
  describe(`INGEST_COPY_CLIENT=${copyClient}`, () => {
    before(async () => {
      const database = `ingest_${copyClient}`;
      const url = await pg.createDatabase(database);
      server = await InProcessServer.start({ databaseUrl: url, env: { INGEST_COPY_CLIENT: copyClient } });
      servers.push(server);
      base = server.url;
      db = pg.connect(database);
      pools.push(db);
      ({ key, orgId } = await createOrgWithKey(base));
    });

    ingestFlows();
  });
}

function expectError(response: { status: number; body: any; headers: Headers }, status: number, code: string) {
  assert.equal(response.status, status, JSON.stringify(response.body));
  assert.equal(response.body.error.code, code);
  assert.equal(typeof response.body.error.message, 'string');
  assert.equal(response.body.error.request_id, response.headers.get('x-request-id'));
}

function ingestFlows(): void {
  describe('single event ingestion', () => {
    test('202 with id, then GET returns the event as stored', async () => {
      const sent = await sendEvent(base, key, {
        type: 'user.signup',
        payload: { id: 1, name: 'Zoë', nested: { tab: 'a\tb', slash: 'c\\d' } },
        occurred_at: '2026-01-01T10:00:00.5+02:00',
      });
      assert.equal(sent.status, 202);
      assert.equal(sent.body.status, 'accepted');
      assert.match(sent.body.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      assert.match(sent.body.received_at, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);

      const got = await call(base, 'GET', `/v1/events/${sent.body.id}`, { key });
      assert.equal(got.status, 200);
      assert.deepEqual(got.body, {
        id: sent.body.id,
        type: 'user.signup',
        payload: { id: 1, name: 'Zoë', nested: { tab: 'a\tb', slash: 'c\\d' } },
        dedup_id: null,
        occurred_at: '2026-01-01T08:00:00.500Z',
        received_at: sent.body.received_at,
        acked_at: null,
      });
    });

    test('times and strings at the edges come back as sent (text and binary COPY)', async () => {
      const payload = {
        emoji: '😀',
        line: 'a\u2028b',
        tab: '\t',
        backslash: '\\n',
        quote: '"',
        nested: [{ k: 'é' }],
        n: -0.5e-7,
      };
      const edges = [
        ['0001-01-01T00:00:00Z', '0001-01-01T00:00:00.000Z'],
        ['1969-12-31T23:59:59.999Z', '1969-12-31T23:59:59.999Z'],
        ['1999-12-31T23:59:59.999Z', '1999-12-31T23:59:59.999Z'],
        ['2000-01-01T00:00:00.001Z', '2000-01-01T00:00:00.001Z'],
        ['2300-06-15T12:00:00.5-01:00', '2300-06-15T13:00:00.500Z'],
        ['9999-12-31T23:59:59.999Z', '9999-12-31T23:59:59.999Z'],
      ];
      // A batch of BINARY_COPY_MIN_ROWS (64) or more is one binary COPY; single events are text.
      const batch = await call(base, 'POST', '/v1/events/batch', {
        key,
        body: {
          events: Array.from({ length: 66 }, (_, i) => ({
            type: 'edge.binary',
            payload: { ...payload, i },
            occurred_at: edges[i % edges.length]![0],
          })),
        },
      });
      assert.equal(batch.body.accepted, 66);
      const stored = await db`
      select id, payload::text as payload, to_char(occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as occurred_at
      from events where type = 'edge.binary'`;
      const byId = new Map(stored.map((row) => [row.id as string, row]));
      batch.body.results.forEach((result: { id: string }, i: number) => {
        const row = byId.get(result.id)!;
        assert.equal(row.occurred_at, edges[i % edges.length]![1]);
        assert.deepEqual(JSON.parse(row.payload), { ...payload, i });
      });
      const sentIds: string[] = [];
      for (const [occurredAt, expected] of edges) {
        const sent = await sendEvent(base, key, { type: 'edge.times', payload, occurred_at: occurredAt });
        assert.equal(sent.status, 202, occurredAt);
        sentIds.push(sent.body.id);
        // Stored, read in SQL; then read back through the API (years below 100 once came back as 19xx/20xx).
        const [row] = await db`
        select to_char(occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as occurred_at,
               to_char(received_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as received_at
        from events where id = ${sent.body.id}`;
        assert.equal(row!.occurred_at, expected);
        assert.equal(row!.received_at, sent.body.received_at);
        const got = await call(base, 'GET', `/v1/events/${sent.body.id}`, { key });
        assert.deepEqual(got.body.payload, payload);
        assert.equal(got.body.occurred_at, expected, `GET /v1/events/:id for ${occurredAt}`);
      }
      const inbox = await call(base, 'GET', '/v1/inbox?limit=1000&type=edge.times', { key });
      assert.equal(inbox.status, 200, inbox.text);
      const inboxTimes = new Map(
        inbox.body.events.map((event: { id: string; occurred_at: string }) => [event.id, event.occurred_at]),
      );
      sentIds.forEach((id, i) => {
        assert.equal(inboxTimes.get(id), edges[i]![1], `the inbox for ${edges[i]![0]}`);
      });
    });

    test('every response carries X-Request-Id (echoed when valid) and X-Response-Time', async () => {
      const echoed = await sendEvent(base, key, { type: 'a', payload: {} }, { 'x-request-id': 'req-123.abc:XYZ' });
      assert.equal(echoed.headers.get('x-request-id'), 'req-123.abc:XYZ');
      assert.match(echoed.headers.get('x-response-time')!, /^\d+\.\d{2}ms$/);
      const replaced = await call(base, 'GET', '/nope', { headers: { 'x-request-id': 'bad id with spaces' } });
      assert.notEqual(replaced.headers.get('x-request-id'), 'bad id with spaces');
      assert.equal(replaced.body.error.request_id, replaced.headers.get('x-request-id'));
      assert.match(replaced.headers.get('x-response-time')!, /ms$/);
    });

    test('422 lists every bad field, including unknown ones', async () => {
      const response = await sendEvent(base, key, {
        type: 'bad type!',
        payload: [1],
        extra: 1,
        occurred_at: 'yesterday',
        dedup_id: '',
      });
      expectError(response, 422, 'validation_failed');
      const fields = response.body.error.details.map((d: { field: string }) => d.field).sort();
      assert.deepEqual(fields, ['dedup_id', 'extra', 'occurred_at', 'payload', 'type']);
    });

    test('422 for missing fields, a body that is not an object, a timestamp without zone', async () => {
      expectError(await sendEvent(base, key, {}), 422, 'validation_failed');
      expectError(await sendEvent(base, key, [1, 2]), 422, 'validation_failed');
      expectError(await sendEvent(base, key, 'text'), 422, 'validation_failed');
      expectError(
        await sendEvent(base, key, { type: 'a', payload: {}, occurred_at: '2026-01-01T10:00:00' }),
        422,
        'validation_failed',
      );
      expectError(await sendEvent(base, key, { type: 'x'.repeat(129), payload: {} }), 422, 'validation_failed');
    });

    test('400 for empty, unparseable and non-UTF-8 bodies', async () => {
      const headers = { 'content-type': 'application/json' };
      expectError(await call(base, 'POST', '/v1/events', { key, raw: '', headers }), 400, 'invalid_json');
      expectError(await call(base, 'POST', '/v1/events', { key, raw: '{"type":', headers }), 400, 'invalid_json');
      const invalidUtf8 = Buffer.concat([
        Buffer.from('{"type":"a","payload":{"s":"'),
        Buffer.from([0xff, 0xfe]),
        Buffer.from('"}}'),
      ]);
      expectError(await call(base, 'POST', '/v1/events', { key, raw: invalidUtf8, headers }), 400, 'invalid_json');
    });

    test('415 unless the body is application/json (charset allowed)', async () => {
      const raw = JSON.stringify({ type: 'a', payload: {} });
      expectError(
        await call(base, 'POST', '/v1/events', { key, raw, headers: { 'content-type': 'text/plain' } }),
        415,
        'unsupported_media_type',
      );
      expectError(
        await call(base, 'POST', '/v1/events', {
          key,
          raw,
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
        }),
        415,
        'unsupported_media_type',
      );
      const ok = await call(base, 'POST', '/v1/events', {
        key,
        raw,
        headers: { 'content-type': 'application/json; charset=utf-8' },
      });
      assert.equal(ok.status, 202);
    });

    test('413 for a payload over 256 KiB serialised', async () => {
      const response = await sendEvent(base, key, { type: 'big', payload: { s: 'x'.repeat(256 * 1024) } });
      expectError(response, 413, 'payload_too_large');
    });

    test('413 is decided while streaming: a 64 MiB body is refused long before it is sent', async () => {
      const total = 64 * 1024 * 1024;
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      // A raw socket: the server answers and closes mid-upload, which node's http client reports
      // as EPIPE before it parses the answer. We read the answer off the wire instead.
      const result = await new Promise<{ status: number; sent: number; body: string }>((resolve, reject) => {
        const socket = net.connect(server.port, '127.0.0.1');
        let sent = 0;
        let received = '';
        let answered = false;
        socket.on('data', (data) => {
          received += data.toString();
          const end = received.indexOf('\r\n\r\n');
          if (!answered && end !== -1 && received.includes('}}')) {
            answered = true;
            resolve({ status: Number(received.slice(9, 12)), sent, body: received.slice(end + 4) });
            socket.destroy();
          }
        });
        socket.on('error', () => {
          if (!answered) reject(new Error(`no answer after ${sent} bytes`));
        });
        socket.on('connect', () => {
          socket.write(
            `POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`,
          );
          // Like curl, read while uploading: yield to the event loop after every chunk.
          const pump = () => {
            if (answered || socket.destroyed) return;
            if (sent >= total) return void socket.write('0\r\n\r\n');
            sent += chunk.length;
            const ok = socket.write(chunk.length.toString(16) + '\r\n') && socket.write(chunk) && socket.write('\r\n');
            if (ok) setImmediate(pump);
            else socket.once('drain', pump);
          };
          pump();
        });
      });
      assert.equal(result.status, 413);
      assert.equal(JSON.parse(result.body).error.code, 'payload_too_large');
      assert.ok(result.sent < total, `server answered only after the whole body (${result.sent} bytes)`);
    });

    test('hostile bodies get 4xx and store nothing', async () => {
      const before = await db`select count(*)::int as n from events`;
      const deep = '{"type":"deep","payload":' + '['.repeat(100_000) + ']'.repeat(100_000) + '}';
      const deepObject = '{"type":"deep","payload":{"a":' + '['.repeat(100_000) + ']'.repeat(100_000) + '}}';
      const headers = { 'content-type': 'application/json' };
      expectError(await call(base, 'POST', '/v1/events', { key, raw: deep, headers }), 422, 'validation_failed');
      expectError(await call(base, 'POST', '/v1/events', { key, raw: deepObject, headers }), 422, 'validation_failed');
      expectError(
        await call(base, 'POST', '/v1/events', { key, raw: '{"type":"n","payload":{"s":"a\\u0000b"}}', headers }),
        422,
        'validation_failed',
      );
      expectError(
        await call(base, 'POST', '/v1/events', { key, raw: '{"type":"n","payload":{"a\\u0000":1}}', headers }),
        422,
        'validation_failed',
      );
      expectError(
        await call(base, 'POST', '/v1/events', { key, raw: '{"type":"n","payload":{"s":"\\ud800"}}', headers }),
        422,
        'validation_failed',
      );
      expectError(
        await call(base, 'POST', '/v1/events', { key, raw: '{"type":"n","payload":{"big":1e400}}', headers }),
        422,
        'validation_failed',
      );
      expectError(
        await call(base, 'POST', '/v1/events', { key, raw: '{"type":"n","payload":{},"__proto__":{"x":1}}', headers }),
        422,
        'validation_failed',
      );
      const after = await db`select count(*)::int as n from events`;
      assert.equal(after[0]!.n, before[0]!.n);
      const alive = await call(base, 'GET', '/status');
      assert.equal(alive.status, 200);
    });
  });

  describe('authentication and routing', () => {
    test('401 for missing, malformed and unknown keys, with one message for all', async () => {
      const event = { type: 'a', payload: {} };
      const missing = await call(base, 'POST', '/v1/events', { body: event });
      const malformed = await sendEvent(base, 'not-a-key', event);
      const unknown = await sendEvent(base, 'zt_live_aaaaaaaaaaaa_' + 'A'.repeat(43), event);
      const wrongSecret = await sendEvent(base, key.slice(0, key.lastIndexOf('_') + 1) + 'B'.repeat(43), event);
      for (const response of [missing, malformed, unknown, wrongSecret]) expectError(response, 401, 'unauthorized');
      assert.equal(new Set([missing, malformed, unknown, wrongSecret].map((r) => r.body.error.message)).size, 1);
    });

    test('X-API-Key works like Authorization: Bearer', async () => {
      const response = await call(base, 'POST', '/v1/events', {
        body: { type: 'a', payload: {} },
        headers: { 'x-api-key': key },
      });
      assert.equal(response.status, 202);
    });

    test('403 when the key lacks the scope', async () => {
      const readOnly = await createOrgWithKey(base, { scopes: ['events:read'] });
      expectError(await sendEvent(base, readOnly.key, { type: 'a', payload: {} }), 403, 'forbidden');
    });

    test('404 for unknown routes and for events of another org; 405 with Allow', async () => {
      expectError(await call(base, 'GET', '/v2/nothing'), 404, 'not_found');
      const mine = await sendEvent(base, key, { type: 'a', payload: {} });
      const other = await createOrgWithKey(base, { name: 'other' });
      expectError(await call(base, 'GET', `/v1/events/${mine.body.id}`, { key: other.key }), 404, 'not_found');
      expectError(await call(base, 'GET', '/v1/events/not-a-uuid', { key }), 404, 'not_found');
      // A v4 UUID's first bits read as a UUIDv7 time past year 9999: still a plain 404.
      expectError(
        await call(base, 'GET', '/v1/events/ffffffff-ffff-4fff-bfff-ffffffffffff', { key }),
        404,
        'not_found',
      );
      const wrongMethod = await call(base, 'PUT', '/v1/events', { key, body: {} });
      expectError(wrongMethod, 405, 'method_not_allowed');
      // POST ingests, GET lists (src/event-list/routes.ts).
      assert.equal(wrongMethod.headers.get('allow'), 'POST, GET');
    });
  });

  describe('dedup', () => {
    test('same dedup_id: 200 duplicate with the original id and received_at, whatever the body', async () => {
      const first = await sendEvent(base, key, { type: 'order.paid', payload: { n: 1 }, dedup_id: 'order-1' });
      const again = await sendEvent(base, key, { type: 'other.type', payload: { n: 2 }, dedup_id: 'order-1' });
      assert.equal(first.status, 202);
      assert.equal(again.status, 200);
      assert.deepEqual(again.body, { id: first.body.id, status: 'duplicate', received_at: first.body.received_at });
    });

    test('Idempotency-Key header is a dedup_id, stored as such; the body field wins', async () => {
      const first = await sendEvent(base, key, { type: 'a', payload: {} }, { 'idempotency-key': 'idem-1' });
      const again = await sendEvent(base, key, { type: 'a', payload: {}, dedup_id: 'idem-1' });
      assert.equal(again.body.id, first.body.id);
      const stored = await call(base, 'GET', `/v1/events/${first.body.id}`, { key });
      assert.equal(stored.body.dedup_id, 'idem-1');
      const bodyWins = await sendEvent(
        base,
        key,
        { type: 'a', payload: {}, dedup_id: 'idem-2' },
        { 'idempotency-key': 'idem-1' },
      );
      assert.equal(bodyWins.status, 202);
      assert.notEqual(bodyWins.body.id, first.body.id);
    });

    test('different orgs never collide on a dedup_id', async () => {
      const other = await createOrgWithKey(base, { name: 'dedup other' });
      const mine = await sendEvent(base, key, { type: 'a', payload: {}, dedup_id: 'shared-id' });
      const theirs = await sendEvent(base, other.key, { type: 'a', payload: {}, dedup_id: 'shared-id' });
      assert.equal(mine.status, 202);
      assert.equal(theirs.status, 202);
      assert.notEqual(mine.body.id, theirs.body.id);
    });

    test('50 concurrent requests with one dedup_id store one event and all get its id', async () => {
      const responses = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          sendEvent(base, key, { type: 'race', payload: { i }, dedup_id: 'race-1' }),
        ),
      );
      const ids = new Set(responses.map((r) => r.body.id));
      assert.equal(ids.size, 1);
      assert.equal(responses.filter((r) => r.status === 202).length, 1);
      assert.equal(responses.filter((r) => r.status === 200).length, 49);
      const [row] = await db`select count(*)::int as n from events where org_id = ${orgId} and dedup_id = 'race-1'`;
      assert.equal(row!.n, 1);
    });
  });

  describe('batch ingestion', () => {
    test('per-item results: valid items stored even when others are rejected', async () => {
      const response = await call(base, 'POST', '/v1/events/batch', {
        key,
        body: {
          events: [
            { type: 'b.one', payload: { i: 1 } },
            { type: 'b.two' },
            { type: 'b.three', payload: { i: 3 }, dedup_id: 'batch-dup' },
            { type: 'b.four', payload: { i: 4 }, dedup_id: 'batch-dup' },
            'not an object',
          ],
        },
      });
      assert.equal(response.status, 200);
      assert.equal(response.body.accepted, 2);
      assert.equal(response.body.duplicates, 1);
      assert.equal(response.body.rejected, 2);
      const results = response.body.results;
      assert.deepEqual(
        results.map((r: { status: string }) => r.status),
        ['accepted', 'rejected', 'accepted', 'duplicate', 'rejected'],
      );
      assert.equal(results[1].error.code, 'validation_failed');
      assert.equal(results[3].id, results[2].id);
      for (const index of [0, 2]) {
        assert.equal((await call(base, 'GET', `/v1/events/${results[index].id}`, { key })).status, 200);
      }
    });

    test('1000 events are fine; 1001 or a wrong envelope is 422', async () => {
      const events = Array.from({ length: 1000 }, (_, i) => ({ type: 'bulk', payload: { i } }));
      const ok = await call(base, 'POST', '/v1/events/batch', { key, body: { events } });
      assert.equal(ok.status, 200);
      assert.equal(ok.body.accepted, 1000);
      expectError(
        await call(base, 'POST', '/v1/events/batch', { key, body: { events: [...events, events[0]] } }),
        422,
        'validation_failed',
      );
      expectError(
        await call(base, 'POST', '/v1/events/batch', { key, body: [{ type: 'a', payload: {} }] }),
        422,
        'validation_failed',
      );
      expectError(
        await call(base, 'POST', '/v1/events/batch', { key, body: { events: [], extra: 1 } }),
        422,
        'validation_failed',
      );
    });
  });

  describe('status', () => {
    test('GET /status reports ok with checks', async () => {
      const response = await call(base, 'GET', '/status');
      assert.equal(response.status, 200);
      assert.equal(response.body.status, 'ok');
      assert.equal(response.body.checks.postgres, 'ok');
      assert.equal(typeof response.body.version, 'string');
      assert.equal(typeof response.body.uptime_s, 'number');
    });
  });

  describe('flushes beside other queries', () => {
    test('every 202 is a stored row while reads share the pool', async () => {
      // The postgres client pipelines queries onto busy connections; a query written behind a COPY
      // would break it and fire its 'finish' (src/db/client-copy.ts). Reads run alongside here.
      const answers = await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          i % 4 === 3
            ? call(base, 'GET', '/v1/inbox?limit=5', { key })
            : sendEvent(base, key, { type: 'mixed.load', payload: { i } }),
        ),
      );
      const accepted = answers.filter((answer) => answer.status === 202).length;
      assert.equal(accepted, 150);
      const [row] = await db`select count(*)::int as n from events where type = 'mixed.load'`;
      assert.equal(row!.n, accepted);
    });
  });

  describe('a COPY that Postgres refuses', () => {
    test('refuses only the refused event (422), promptly; its neighbours are stored; later flushes work', async () => {
      // Rows are validated before COPY, so a refusal needs help: a constraint only this type breaks.
      await db`alter table events add constraint test_refuse_copy check (type <> 'copy.refused')`;
      try {
        const started = performance.now();
        const refused = await sendEvent(base, key, { type: 'copy.refused', payload: { n: 1 } });
        expectError(refused, 422, 'validation_failed');
        assert.match(refused.body.error.details[0].message, /cannot be stored \(SQLSTATE 23514/);
        // Not the flush timeout (FLUSH_TIMEOUT_MS, 10 s): the client's hang on a refused COPY
        // (porsager/postgres#1173) must not hold the answer.
        assert.ok(performance.now() - started < 3000, `422 took ${Math.round(performance.now() - started)} ms`);
        // Issue 23: the flush is split until the refused row stands alone; the other one is stored.
        const batch = await call(base, 'POST', '/v1/events/batch', {
          key,
          body: {
            events: [
              { type: 'copy.refused', payload: {} },
              { type: 'copy.fine', payload: {} },
            ],
          },
        });
        assert.equal(batch.status, 200, batch.text);
        assert.deepEqual(
          batch.body.results.map((r: { status: string }) => r.status),
          ['rejected', 'accepted'],
        );
        assert.equal(batch.body.results[0].error.code, 'validation_failed');
      } finally {
        await db`alter table events drop constraint test_refuse_copy`;
      }
      const after: string[] = [];
      for (let i = 0; i < 4; i++) {
        const sent = await sendEvent(base, key, { type: 'copy.after', payload: { i } });
        assert.equal(sent.status, 202);
        after.push(sent.body.id);
        assert.equal((await call(base, 'GET', `/v1/events/${sent.body.id}`, { key })).body.payload.i, i);
      }
      const [row] = await db`select count(*)::int as n from events where type = 'copy.refused'`;
      assert.equal(row!.n, 0);
      const [fine] = await db`select count(*)::int as n from events where type = 'copy.fine'`;
      assert.equal(fine!.n, 1);
      // The refused flushes' fences (src/ingest/sequence.ts) ended with their transactions: nothing
      // holds the inbox back, which shows the later events at once.
      const inbox = await call(base, 'GET', '/v1/inbox?type=copy.after&limit=1000', { key });
      assert.equal(inbox.status, 200);
      const listed = inbox.body.events.map((event: { id: string }) => event.id);
      for (const id of after) assert.ok(listed.includes(id), `event ${id} is missing from the inbox`);
    });
  });
}
