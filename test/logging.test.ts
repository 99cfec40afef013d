import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import type { Sql } from '../src/db/connect.js';
import { call, createOrgWithKey, sendEvent, keySecret, UNKNOWN_API_KEY } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { ADMIN_TOKEN, TestServer } from './helpers/server.js';

let pg: TestPostgres;
let server: TestServer;
let db: Sql;
let base: string;
let key: string;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const RESPONSE_TIME = /^\d+\.\d{2}ms$/;

before(async () => {
  pg = await TestPostgres.start();
  const url = await pg.createDatabase('logging');
  // LOG_LEVEL '' = unset: the default level (info), as a user runs it.
  server = await TestServer.start({ databaseUrl: url, workers: 2, env: { LOG_LEVEL: '' } });
  base = server.url;
  db = pg.connect('logging');
  ({ key } = await createOrgWithKey(base));
});

after(async () => {
  await db?.end({ timeout: 1 });
  await server?.stop();
  await pg?.stop();
});

/** The server's output as JSON log lines (other lines, like the serving banner, are skipped). */
function logLines(output: string): Array<Record<string, any>> {
  return output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line));
}

async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('start-up banner', () => {
  test('the primary prints once what it serves: URL, workers, database, Redis', () => {
    const banners = server.output.split('\n').filter((line) => line.startsWith('Triggers API serving on'));
    assert.equal(banners.length, 1, server.output);
    assert.equal(
      banners[0],
      `Triggers API serving on http://127.0.0.1:${server.port} with 2 HTTP workers; database: DATABASE_URL; redis: not used (single node)`,
    );
  });
});

describe('X-Request-Id and X-Response-Time', () => {
  test('on every kind of response, generated when absent', async () => {
    const responses = [
      await sendEvent(base, key, { type: 'a', payload: {} }),
      await sendEvent(base, key, { type: 'a' }),
      await call(base, 'GET', '/status'),
      await call(base, 'GET', '/metrics'),
      await call(base, 'GET', '/nowhere'),
      await call(base, 'PUT', '/v1/events'),
      await call(base, 'POST', '/v1/events', { raw: '{}', headers: { 'content-type': 'text/plain' }, key }),
      await call(base, 'GET', '/v1/inbox', { key: UNKNOWN_API_KEY }),
    ];
    const ids = new Set<string>();
    for (const response of responses) {
      const id = response.headers.get('x-request-id');
      assert.match(id ?? '', UUID, `status ${response.status}: ${response.text}`);
      assert.match(response.headers.get('x-response-time') ?? '', RESPONSE_TIME);
      if (response.status >= 400) assert.equal(response.body.error.request_id, id);
      ids.add(id!);
    }
    assert.equal(ids.size, responses.length, 'each response gets its own id');
  });

  test('a valid incoming id is echoed, in the header and in an error body', async () => {
    const accepted = await sendEvent(base, key, { type: 'a', payload: {} }, { 'x-request-id': 'client-42.a:B_c-9' });
    assert.equal(accepted.status, 202);
    assert.equal(accepted.headers.get('x-request-id'), 'client-42.a:B_c-9');
    const longest = 'r'.repeat(128);
    const refused = await sendEvent(base, key, { payload: {} }, { 'x-request-id': longest });
    assert.equal(refused.status, 422);
    assert.equal(refused.headers.get('x-request-id'), longest);
    assert.equal(refused.body.error.request_id, longest);
  });

  test('an invalid incoming id is replaced by a generated one', async () => {
    for (const bad of ['has space', 'r'.repeat(129), 'semi;colon', 'a/b', '{"json":1}']) {
      const response = await call(base, 'GET', '/status', { headers: { 'x-request-id': bad } });
      const id = response.headers.get('x-request-id')!;
      assert.notEqual(id, bad);
      assert.match(id, UUID);
    }
  });
});

describe('structured logs', () => {
  test('no log line per request at the default level', async () => {
    const mark = server.output.length;
    const tag = `quiet-${Date.now()}`;
    let sent = 0;
    for (let i = 0; i < 40; i++) {
      const headers = { 'x-request-id': `${tag}-${i}` };
      const responses = await Promise.all([
        sendEvent(base, key, { type: 'log.test', payload: { i } }, headers),
        call(base, 'GET', '/status', { headers }),
        call(base, 'GET', '/nowhere', { headers }),
        sendEvent(base, key, { type: 'bad type', payload: {} }, headers),
      ]);
      assert.deepEqual(
        responses.map((r) => r.status),
        [202, 200, 404, 422],
      );
      sent += responses.length;
    }
    // Anything the server would log about these requests has been written by now: a request
    // after them has been answered, and pino writes synchronously to stdout.
    await call(base, 'GET', '/status');
    await new Promise((resolve) => setTimeout(resolve, 500));
    const lines = logLines(server.output.slice(mark));
    assert.ok(sent === 160);
    assert.deepEqual(
      lines.filter((line) => JSON.stringify(line).includes(tag)),
      [],
      'no line mentions these requests',
    );
    assert.ok(
      lines.length < 5,
      `expected (almost) no log lines during ${sent} requests, got ${lines.length}:\n${server.output.slice(mark)}`,
    );
  });

  test('a failed request logs one error line with its request id, and no secrets', async () => {
    const sent = await sendEvent(base, key, { type: 'a', payload: {} });
    assert.equal(sent.status, 202);
    const mark = server.output.length;
    const requestId = `fail-${Date.now()}`;
    // A database error the handler does not expect: the answer is 500, the details go to the log.
    await db`alter table events rename to events_moved_away`;
    let failed;
    try {
      failed = await call(base, 'GET', `/v1/events/${sent.body.id}`, { key, headers: { 'x-request-id': requestId } });
    } finally {
      await db`alter table events_moved_away rename to events`;
    }
    assert.equal(failed.status, 500, failed.text);
    assert.equal(failed.body.error.code, 'internal_error');
    assert.equal(failed.body.error.request_id, requestId);
    assert.doesNotMatch(failed.text, /events_moved_away|at .*\.js/, 'no internals in the answer');

    await waitFor('the error line', () =>
      logLines(server.output.slice(mark)).some((line) => line.request_id === requestId),
    );
    const errors = logLines(server.output.slice(mark)).filter((line) => line.request_id === requestId);
    assert.equal(errors.length, 1, 'exactly one line for the failure');
    const [line] = errors as [Record<string, any>];
    assert.equal(line.level, 50, 'logged at error level');
    assert.equal(line.route, 'GET /v1/events/:id');
    assert.match(typeof line.time === 'string' ? line.time : '', /^\d{4}-\d{2}-\d{2}T/);
    assert.ok(typeof line.pid === 'number');
    assert.match(JSON.stringify(line.err), /events/, 'the cause is in the log');

    const secret = keySecret(key);
    assert.ok(secret.length >= 43, 'the whole secret');
    assert.ok(!server.output.includes(secret), 'an API key secret never reaches the logs');
    assert.ok(!server.output.includes(ADMIN_TOKEN), 'the admin token never reaches the logs');
  });
});

describe('LOG_LEVEL', () => {
  test('an unknown level stops the start with a message naming the variable', () => {
    const main = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src/main.js');
    const run = spawnSync(process.execPath, [main], {
      env: { ...process.env, LOG_LEVEL: 'verbose', PORT: '0' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(run.status, 1);
    assert.match(run.stderr, /LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got "verbose"/);
    assert.doesNotMatch(run.stderr, /\n\s+at /, 'no stack trace');
  });
});
