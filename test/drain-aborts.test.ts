import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { call, createOrgWithKey, sendEvent } from './helpers/api.js';
import { holdEventsLock, TestPostgres } from './helpers/postgres.js';
import { RawRequest } from './helpers/raw-http.js';
import { TestServer } from './helpers/server.js';

/*
 * The drain waits for the HTTP worker's count of requests in flight to reach 0. A request that
 * never ended its count (an upload aborted mid-body used to) made every later drain wait the whole
 * SHUTDOWN_TIMEOUT_MS; one ended twice would let a drain end under a live request. Every path
 * here must end its count exactly once: the gauge http_requests_in_flight shows the count.
 */

const SHUTDOWN_TIMEOUT_MS = 60_000;

let pg: TestPostgres;
let server: TestServer;

before(async () => {
  pg = await TestPostgres.start();
  server = await TestServer.start({
    databaseUrl: await pg.createDatabase('drain'),
    workers: 1,
    env: { SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS), LOG_LEVEL: 'info' },
  });
});

after(async () => {
  await server?.killAll();
  await pg?.stop();
});

/** http_requests_in_flight as scraped; the scrape itself is one request in flight. */
async function inFlight(): Promise<number> {
  const text = (await call(server.url, 'GET', '/metrics')).text;
  const line = text.split('\n').find((l) => l.startsWith('http_requests_in_flight '));
  assert.ok(line, 'no http_requests_in_flight in /metrics');
  return Number(line.split(' ')[1]);
}

async function settledInFlight(): Promise<number> {
  let seen = await inFlight();
  for (let i = 0; i < 50 && seen !== 1; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    seen = await inFlight();
  }
  return seen;
}

const single = (key: string) => ({ authorization: `Bearer ${key}`, 'content-type': 'application/json' });

test('aborted uploads and aborted waits end their count once; SIGTERM then exits promptly', async () => {
  const { key, orgId } = await createOrgWithKey(server.url);
  assert.equal((await sendEvent(server.url, key, { type: 'drain.warm', payload: {} })).status, 202);
  const second = await call(server.url, 'POST', `/v1/admin/orgs/${orgId}/keys`, { admin: true, body: {} });
  assert.equal(second.status, 201);

  // Ordinary answers: success, 401 before the body, 422 after it, a 413 on Content-Length alone.
  assert.equal((await sendEvent(server.url, key, { type: 'drain.ok', payload: {} })).status, 202);
  assert.equal(
    (await sendEvent(server.url, 'zt_live_nosuchkid1_' + 'x'.repeat(43), { type: 'a', payload: {} })).status,
    401,
  );
  assert.equal((await sendEvent(server.url, key, { type: '', payload: {} })).status, 422);
  const early413 = await RawRequest.send(
    server.port,
    { method: 'POST', path: '/v1/events', headers: single(key), contentLength: 600_000 },
    '{"type":',
  );
  assert.equal((await early413.response(10_000))?.status, 413);
  early413.abort();

  // Gone mid-body, with a cached key (the body was being read) ...
  const midBody = await RawRequest.send(
    server.port,
    { method: 'POST', path: '/v1/events/batch', headers: single(key), contentLength: 1_000_000 },
    '{"events":[' + ' '.repeat(50_000),
  );
  await new Promise((resolve) => setTimeout(resolve, 300));
  midBody.abort();
  // ... and with a key seen for the first time (the body waited, paused, for its verification).
  const midVerify = await RawRequest.send(
    server.port,
    { method: 'POST', path: '/v1/events/batch', headers: single(second.body.key), contentLength: 1_000_000 },
    '{"events":[',
  );
  midVerify.abort();

  // Gone while its event waited for a flush stalled behind a lock.
  const db = pg.connect('drain');
  try {
    const lock = await holdEventsLock(db);
    const body = JSON.stringify({ type: 'drain.waiting', payload: {} });
    const waiting = await RawRequest.send(
      server.port,
      { method: 'POST', path: '/v1/events', headers: single(key), contentLength: Buffer.byteLength(body) },
      body,
    );
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(waiting.isClosed, false);
    assert.equal(await waiting.response(0), null, 'answered while the flush was stalled');
    waiting.abort();
    await new Promise((resolve) => setTimeout(resolve, 200));
    lock.release();
    await lock.done;
  } finally {
    await db.end({ timeout: 1 });
  }

  // Every request above has ended its count once: only this scrape is in flight (2 or more: one
  // never ended; 0 or below: one ended twice).
  assert.equal(await settledInFlight(), 1);

  const started = Date.now();
  const code = await server.stop('SIGTERM');
  const tookMs = Date.now() - started;
  assert.equal(code, 0, server.output);
  assert.ok(tookMs < SHUTDOWN_TIMEOUT_MS / 2, `drain took ${tookMs} ms (SHUTDOWN_TIMEOUT_MS ${SHUTDOWN_TIMEOUT_MS})`);
  assert.doesNotMatch(server.output, /drain deadline passed/);
});
