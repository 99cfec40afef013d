import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Pool } from 'undici';
import { call, createOrgWithKey } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { driveEvents, expectedAccepted, spreadCalls } from './helpers/rate-load.js';
import { TestServer } from './helpers/server.js';

/**
 * Rate limits on one node without Redis: workers lease tokens from the cluster primary.
 * Black-box over HTTP against the real server (2 workers) and a real Postgres.
 */

const EVENT = { type: 'rate.test', payload: { ok: true } };
const ZERO_UUID = '00000000-0000-7000-8000-000000000000';

describe('rate limits (single node, leases over cluster IPC)', () => {
  let pg: TestPostgres;
  let server: TestServer;

  before(async () => {
    pg = await TestPostgres.start();
    server = await TestServer.start({ databaseUrl: await pg.createDatabase(), workers: 2 });
  });

  after(async () => {
    await server?.stop();
    await pg?.stop();
  });

  test('without REDIS_URL, /status reports redis as disabled and the node as ok', async () => {
    const status = await call(server.url, 'GET', '/status');
    assert.equal(status.status, 200);
    assert.equal(status.body.status, 'ok');
    assert.equal(status.body.checks.redis, 'disabled');
  });

  test('over the limit: 429 rate_limited with Retry-After and RateLimit-* headers', async () => {
    const { key } = await createOrgWithKey(server.url, { rate_limit_per_sec: 1, burst: 3 });
    const first = await call(server.url, 'POST', '/v1/events', { key, body: EVENT });
    assert.equal(first.status, 202);
    assert.equal(first.headers.get('ratelimit-limit'), '1');
    assert.match(first.headers.get('ratelimit-remaining') ?? '', /^[0-2]$/);
    assert.match(first.headers.get('ratelimit-reset') ?? '', /^\d+$/);

    const statuses: number[] = [first.status];
    let limited = null;
    for (let i = 0; i < 8; i++) {
      const response = await call(server.url, 'POST', '/v1/events', { key, body: EVENT });
      statuses.push(response.status);
      if (response.status === 429) limited ??= response;
    }
    assert.deepEqual(statuses.slice(0, 3), [202, 202, 202], `burst of 3 is admitted: ${statuses}`);
    // burst 3 + at most ~1 refilled, + at most one token a second worker admitted on credit.
    assert.ok(statuses.filter((s) => s === 202).length <= 5, `statuses ${statuses}`);
    assert.ok(limited, `some requests were limited: ${statuses}`);
    assert.equal(limited.body.error.code, 'rate_limited');
    assert.equal(limited.body.error.request_id, limited.headers.get('x-request-id'));
    const retryAfter = Number(limited.headers.get('retry-after'));
    assert.ok(
      Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 3,
      `Retry-After ${limited.headers.get('retry-after')}`,
    );
    assert.equal(limited.headers.get('ratelimit-limit'), '1');
    assert.equal(limited.headers.get('ratelimit-remaining'), '0');
    assert.ok(Number(limited.headers.get('ratelimit-reset')) >= 1);
  });

  test('every authenticated response carries RateLimit-* headers; reads and errors do not charge', async () => {
    const { key } = await createOrgWithKey(server.url, { rate_limit_per_sec: 1, burst: 3 });
    const reads = await spreadCalls(server.url, 12, 'GET', `/v1/events/${ZERO_UUID}`, key);
    for (const read of reads) {
      assert.equal(read.status, 404);
      assert.equal(read.headers['ratelimit-limit'], '1');
      assert.equal(read.headers['ratelimit-remaining'], '3');
    }
    const invalid = await spreadCalls(server.url, 6, 'POST', '/v1/events', key, { type: 'bad type!', payload: {} });
    for (const response of invalid) {
      assert.equal(response.status, 422);
      assert.equal(response.headers['ratelimit-limit'], '1');
    }
    const { key: readOnly } = await createOrgWithKey(server.url, {
      rate_limit_per_sec: 7,
      burst: 7,
      scopes: ['events:read'],
    });
    const forbidden = await call(server.url, 'POST', '/v1/events', { key: readOnly, body: EVENT });
    assert.equal(forbidden.status, 403);
    assert.equal(forbidden.headers.get('ratelimit-limit'), '7');
    const unknown = await call(server.url, 'POST', '/v1/events', {
      key: 'zt_live_nosuchkid_' + 'x'.repeat(43),
      body: EVENT,
    });
    assert.equal(unknown.status, 401);
    assert.equal(unknown.headers.get('ratelimit-limit'), null, 'no org is known for a bad key');

    // None of the above spent a token: the whole burst is still there.
    const writes = await spreadCalls(server.url, 3, 'POST', '/v1/events', key, EVENT);
    assert.deepEqual(
      writes.map((w) => w.status),
      [202, 202, 202],
    );
  });

  test('answers refused before the body is read (415, 413) carry RateLimit-* too once the key is known', async () => {
    const { key } = await createOrgWithKey(server.url, { rate_limit_per_sec: 9, burst: 9 });
    // One connection: every request reaches the same worker, which knows the key after the first.
    const pool = new Pool(server.url, { connections: 1 });
    try {
      const request = async (options: {
        method: 'GET' | 'POST';
        path: string;
        contentType?: string;
        body?: string;
      }) => {
        const response = await pool.request({
          method: options.method,
          path: options.path,
          body: options.body,
          headers: {
            authorization: `Bearer ${key}`,
            ...(options.contentType ? { 'content-type': options.contentType } : {}),
          },
        });
        await response.body.text();
        return response;
      };
      const first = await request({ method: 'GET', path: `/v1/events/${ZERO_UUID}` });
      assert.equal(first.statusCode, 404);
      assert.equal(first.headers['ratelimit-limit'], '9');
      const wrongType = await request({
        method: 'POST',
        path: '/v1/events',
        contentType: 'text/plain',
        body: JSON.stringify(EVENT),
      });
      assert.equal(wrongType.statusCode, 415);
      assert.equal(wrongType.headers['ratelimit-limit'], '9');
      assert.equal(wrongType.headers['ratelimit-remaining'], '9', 'nothing charged');
      const tooLarge = await request({
        method: 'POST',
        path: '/v1/events',
        contentType: 'application/json',
        body: 'x'.repeat(600 * 1024),
      });
      assert.equal(tooLarge.statusCode, 413);
      assert.equal(tooLarge.headers['ratelimit-limit'], '9');
    } finally {
      await pool.close();
    }
  });

  test('a batch costs one token per valid event', async () => {
    const { key } = await createOrgWithKey(server.url, { rate_limit_per_sec: 1, burst: 50 });
    const events = (n: number) => Array.from({ length: n }, (_, i) => ({ type: 'batch.item', payload: { i } }));
    const first = await call(server.url, 'POST', '/v1/events/batch', {
      key,
      body: { events: [...events(30), { type: '' }, { payload: {} }] },
    });
    assert.equal(first.status, 200, first.text);
    assert.equal(first.body.accepted, 30);
    assert.equal(first.body.rejected, 2);
    assert.ok(
      Number(first.headers.get('ratelimit-remaining')) <= 21,
      `remaining ${first.headers.get('ratelimit-remaining')}`,
    );

    // 30 more would exceed the ~20 left (refill is 1/s): refused as a whole, nothing stored.
    const second = await call(server.url, 'POST', '/v1/events/batch', { key, body: { events: events(30) } });
    assert.equal(second.status, 429, second.text);
    assert.equal(second.body.error.code, 'rate_limited');
    assert.ok(
      Number(second.headers.get('retry-after')) >= 5,
      `Retry-After ${second.headers.get('retry-after')} for ~10 missing tokens at 1/s`,
    );

    const third = await call(server.url, 'POST', '/v1/events/batch', { key, body: { events: events(15) } });
    assert.equal(third.status, 200, third.text);
    assert.equal(third.body.accepted, 15);

    // Larger than the burst: can never pass, and the message says why.
    const huge = await call(server.url, 'POST', '/v1/events/batch', { key, body: { events: events(51) } });
    assert.equal(huge.status, 429);
    assert.match(huge.body.error.message, /burst/);
  });

  test('PATCH /v1/admin/orgs/{id} limits apply on every worker within 2 s', async () => {
    const { orgId, key } = await createOrgWithKey(server.url, { rate_limit_per_sec: 1000, burst: 1000 });
    const warm = await spreadCalls(server.url, 16, 'POST', '/v1/events', key, EVENT);
    assert.ok(warm.every((w) => w.status === 202));

    const patched = await call(server.url, 'PATCH', `/v1/admin/orgs/${orgId}`, {
      admin: true,
      body: { rate_limit_per_sec: 2, burst: 2 },
    });
    assert.equal(patched.status, 200, patched.text);
    const patchedAt = performance.now();
    let applied = false;
    while (!applied && performance.now() - patchedAt < 2000) {
      const reads = await spreadCalls(server.url, 8, 'GET', `/v1/events/${ZERO_UUID}`, key);
      applied = reads.every(
        (r) => r.headers['ratelimit-limit'] === '2' && Number(r.headers['ratelimit-remaining']) <= 2,
      );
      if (!applied) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.ok(applied, 'every worker reports the new limit within 2 s');
    // And enforces it: 3 s of load admits about burst + 3 x rate, not hundreds.
    const load = await driveEvents([{ url: server.url, connections: 8 }], key, 3000);
    assert.ok(load.accepted <= expectedAccepted(2, 2, load.elapsedMs) + 2, `accepted ${load.accepted} at 2/s`);

    const raised = await call(server.url, 'PATCH', `/v1/admin/orgs/${orgId}`, {
      admin: true,
      body: { rate_limit_per_sec: 5000, burst: 5000 },
    });
    assert.equal(raised.status, 200);
    const raisedAt = performance.now();
    let admitted = false;
    while (!admitted && performance.now() - raisedAt < 2000) {
      const writes = await spreadCalls(server.url, 8, 'POST', '/v1/events', key, EVENT);
      admitted = writes.every((w) => w.status === 202 && w.headers['ratelimit-limit'] === '5000');
      if (!admitted) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.ok(admitted, 'a raised limit admits again within 2 s');
  });
});
