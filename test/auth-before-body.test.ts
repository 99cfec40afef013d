import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { Pool } from 'undici';
import type { Sql } from '../src/db/connect.js';
import { call, createOrgWithKey, sendEvent } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { RawRequest } from './helpers/raw-http.js';
import { TestServer } from './helpers/server.js';

/*
 * API.md §2: unknown kids are rejected without hashing, and a flood of wrong keys must not take
 * the server down. Here: a bad key gets its 401 before its body is read (an 8 MiB batch under
 * `Bearer x` is not buffered), and a flood of random kids costs statements in proportion to
 * nothing: they share look-ups, counted by Postgres itself (pg_stat_statements), while a dedup
 * ingest keeps answering.
 */

let pg: TestPostgres;
let server: TestServer;
let db: Sql;

before(async () => {
  pg = await TestPostgres.start();
  // pg_stat_statements needs its library loaded at start: set it, restart the cluster.
  const admin = pg.connect('postgres');
  await admin`alter system set shared_preload_libraries = 'pg_stat_statements'`;
  await admin.end({ timeout: 1 });
  await pg.pause();
  await pg.resume();
  const url = await pg.createDatabase('authbody');
  db = pg.connect('authbody');
  await db`create extension pg_stat_statements`;
  server = await TestServer.start({ databaseUrl: url, workers: 2 });
});

after(async () => {
  await server?.stop();
  await db?.end({ timeout: 1 });
  await pg?.stop();
});

const BATCH_LIMIT = 8 * 1024 * 1024;
const randomKid = () => `zt_live_${randomBytes(6).toString('hex')}_${randomBytes(32).toString('base64url')}`;

/** The head and the first 64 KiB of an 8 MiB batch; the rest is never sent. */
async function partialBatch(authorization: string) {
  const request = await RawRequest.send(
    server.port,
    {
      method: 'POST',
      path: '/v1/events/batch',
      contentLength: BATCH_LIMIT,
      headers: { authorization, 'content-type': 'application/json' },
    },
    '{"events":[' + ' '.repeat(64 * 1024 - 11),
  );
  try {
    return { response: await request.response(15_000), sent: request.bytesSent };
  } finally {
    request.abort();
  }
}

test('a malformed, unknown, wrong or wrong-env key is refused with 401 before its body is read', async () => {
  const { key } = await createOrgWithKey(server.url);
  const [, kid] = /^zt_live_([a-z0-9]+)_/.exec(key)!;
  const wrongSecret = `zt_live_${kid}_${randomBytes(32).toString('base64url')}`;
  const otherEnv = key.replace(/^zt_live_/, 'zt_test_');
  for (const [what, authorization] of [
    ['malformed', 'Bearer x'],
    ['unknown kid', `Bearer ${randomKid()}`],
    ['wrong secret', `Bearer ${wrongSecret}`],
    ['other env', `Bearer ${otherEnv}`],
  ]) {
    const { response, sent } = await partialBatch(authorization!);
    assert.ok(response, `${what}: no answer while 8 MiB of body was still unsent (the server waits for the body)`);
    assert.equal(response.status, 401, `${what}: ${JSON.stringify(response.body)}`);
    assert.equal(response.body.error.code, 'unauthorized');
    assert.equal(response.body.error.message, 'Missing or invalid API key.');
    assert.ok(sent < 100 * 1024);
  }
  // The valid key still works (the wrong ones did not disturb it).
  assert.equal((await sendEvent(server.url, key, { type: 'auth.body', payload: {} })).status, 202);
});

test('a key seen for the first time still streams a large batch in (its body waits for the verification)', async () => {
  const { key } = await createOrgWithKey(server.url, { name: 'big first batch' });
  const payload = { blob: 'x'.repeat(6_000) };
  const events = Array.from({ length: 800 }, (_, i) => ({ type: 'auth.big', payload: { ...payload, i } }));
  const response = await call(server.url, 'POST', '/v1/events/batch', { key, body: { events } });
  assert.equal(response.status, 200, response.text.slice(0, 300));
  assert.equal(response.body.accepted, 800);
});

test('a flood of random kids shares its look-ups, and a dedup ingest keeps answering 202', async () => {
  const { key } = await createOrgWithKey(server.url, { name: 'dedup under flood' });
  assert.equal((await sendEvent(server.url, key, { type: 'warm', payload: {} })).status, 202);
  await db`select pg_stat_statements_reset()`;

  const FLOOD = 3_000;
  const pool = new Pool(server.url, { connections: 64, pipelining: 8 });
  let flooding = true;
  const floodStatuses: number[] = [];
  const flood = (async () => {
    const one = async () => {
      const response = await pool.request({
        path: '/v1/events',
        method: 'POST',
        body: '{"type":"x","payload":{}}',
        headers: { authorization: `Bearer ${randomKid()}`, 'content-type': 'application/json' },
      });
      await response.body.text();
      floodStatuses.push(response.statusCode);
    };
    const lanes = Array.from({ length: 512 }, async () => {
      while (floodStatuses.length < FLOOD) await one();
    });
    await Promise.all(lanes);
    flooding = false;
  })();

  const dedupLatencies: number[] = [];
  let n = 0;
  while (flooding || n < 5) {
    const started = performance.now();
    const response = await sendEvent(server.url, key, { type: 'dedup.flood', payload: { n }, dedup_id: `flood-${n}` });
    dedupLatencies.push(performance.now() - started);
    assert.equal(response.status, 202, response.text);
    n++;
  }
  await flood;
  await pool.close();

  assert.ok(
    floodStatuses.every((status) => status === 401),
    `flood answers: ${[...new Set(floodStatuses)]}`,
  );
  const [stats] = await db`
    select coalesce(sum(calls), 0)::int as calls from pg_stat_statements
    where query ~ 'from api_keys\\s+where kid ='`;
  const calls = stats!.calls as number;
  console.log(
    `# ${floodStatuses.length} random kids: ${calls} look-up statements; ${n} dedup ingests, slowest ${Math.max(...dedupLatencies).toFixed(0)} ms`,
  );
  // One statement per kid before; now kids arriving together share one (measured 1 per 4.5-6.5 on
  // a quiet machine, 1 per 2.9 with the two cores saturated: fewer kids wait per statement).
  assert.ok(calls <= floodStatuses.length / 2, `${calls} look-up statements for ${floodStatuses.length} random kids`);
  // A sanity bound, not a speed test: the dedup path never waited behind the flood for seconds.
  assert.ok(Math.max(...dedupLatencies) < 5_000, `a dedup ingest took ${Math.max(...dedupLatencies)} ms`);
});

test('a flood of GET /status shares its Postgres checks', async () => {
  const selectOnes = async () => {
    const [row] =
      await db`select coalesce(sum(calls), 0)::int as calls from pg_stat_statements where query = 'select $1'`;
    return row!.calls as number;
  };
  const FLOOD = 1_000;
  const pool = new Pool(server.url, { connections: 128 });
  const before = await selectOnes();
  const statuses = await Promise.all(
    Array.from({ length: FLOOD }, async () => {
      const response = await pool.request({ path: '/status', method: 'GET' });
      await response.body.text();
      return response.statusCode;
    }),
  );
  await pool.close();
  const calls = (await selectOnes()) - before;
  console.log(`# ${FLOOD} GET /status: ${calls} select 1`);
  assert.ok(statuses.every((status) => status === 200));
  // One each before; measured 81-297 here, depending on how the requests overlapped.
  assert.ok(calls <= FLOOD / 2, `${calls} Postgres checks for ${FLOOD} GET /status`);
});
