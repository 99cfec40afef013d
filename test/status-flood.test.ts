import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Sql } from '../src/db/connect.js';
import { PROBE_FRESH_MS, SharedProbe, type CheckResult, type DependencyCheck } from '../src/ops/status.js';
import { call, createOrgWithKey } from './helpers/api.js';
import { boundedCall } from './helpers/db-faults.js';
import { sleep } from './helpers/load.js';
import { TestPostgres } from './helpers/postgres.js';
import { TestServer } from './helpers/server.js';

/**
 * Issue 23: GET /status (no credentials) must not pile queries onto the shared pool while
 * Postgres stalls. Each request used to run its own `select 1` and leave it queued after its 2 s
 * timeout; they all ran once Postgres answered again, ahead of the requests that matter.
 */

/** A check whose runs the test settles by hand. */
function manualCheck(): DependencyCheck & { runs: number; settle(result: CheckResult): void } {
  const pending: Array<(result: CheckResult) => void> = [];
  const check = {
    name: 'postgres',
    required: true,
    runs: 0,
    run() {
      check.runs++;
      return new Promise<CheckResult>((resolve) => pending.push(resolve));
    },
    settle(result: CheckResult) {
      for (const resolve of pending.splice(0)) resolve(result);
    },
  };
  return check;
}

test('SharedProbe: one run in flight for any number of callers, its result reused while fresh, then probed again', async () => {
  let now = 1_000_000;
  const check = manualCheck();
  const probe = new SharedProbe(check, () => now);
  const waiting = Array.from({ length: 100 }, () => probe.result());
  assert.equal(check.runs, 1);
  check.settle('ok');
  assert.deepEqual(new Set(await Promise.all(waiting)), new Set(['ok']));
  now += PROBE_FRESH_MS - 1;
  assert.equal(await probe.result(), 'ok');
  assert.equal(check.runs, 1, 'a fresh result is reused');
  now += 2;
  const next = probe.result();
  assert.equal(check.runs, 2);
  check.settle('down');
  assert.equal(await next, 'down');
});

test('SharedProbe: a run that never settles answers "down" after the timeout and is not duplicated; after 30 s another may start', async () => {
  let now = 1_000_000;
  const check = manualCheck();
  const probe = new SharedProbe(check, () => now);
  const answers = await Promise.all(Array.from({ length: 20 }, () => probe.result()));
  assert.deepEqual(new Set(answers), new Set(['down']));
  assert.equal(check.runs, 1);
  now += 29_000;
  void probe.result();
  assert.equal(check.runs, 1);
  now += 2_000;
  const replaced = probe.result();
  assert.equal(check.runs, 2);
  check.settle('ok'); // both settle: only the current one is recorded
  assert.equal(await replaced, 'ok');
});

let pg: TestPostgres;
let db: Sql;
let server: TestServer;
const DATABASE = 'status_flood';

before(async () => {
  pg = await TestPostgres.start();
  const url = await pg.createDatabase(DATABASE);
  db = pg.connect(DATABASE);
  // Every statement the server's sessions run is logged: the test counts the probes that reached Postgres.
  await db.unsafe(`alter database ${DATABASE} set log_statement = 'all'`);
  server = await TestServer.start({ databaseUrl: url, workers: 2 });
});

after(async () => {
  await server?.killAll();
  await db?.end({ timeout: 1 });
  await pg?.stop();
});

const logPath = () => path.join(pg.dir, 'postgres.log');
/** `select 1` statements executed so far (the /status probe; nothing else runs that statement). */
const probesRun = () =>
  fs
    .readFileSync(logPath(), 'utf8')
    .split('\n')
    .filter((line) => /(execute|statement)[^:]*: select 1\s*$/.test(line)).length;

/**
 * Stalls Postgres for this database as a frozen host would: the postmaster (no new connection is
 * answered) and every backend of the database except the test's own stop (SIGSTOP) until
 * `resume()`, which SIGCONTs exactly those processes.
 */
async function stallPostgres(): Promise<{ resume(): void }> {
  const postmaster = Number(fs.readFileSync(path.join(pg.dir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0]);
  const backends =
    await db`select pid from pg_stat_activity where datname = ${DATABASE} and pid <> pg_backend_pid() and backend_type = 'client backend'`;
  const stopped = [postmaster, ...backends.map((row) => row.pid as number)];
  for (const pid of stopped) process.kill(pid, 'SIGSTOP');
  return {
    resume() {
      for (const pid of stopped) {
        try {
          process.kill(pid, 'SIGCONT');
        } catch {
          // already gone
        }
      }
    },
  };
}

test('a flood of /status while Postgres stalls adds at most one query per process to the pool, and a dedup_id ingest works when the stall ends', async () => {
  const { key } = await createOrgWithKey(server.url, { name: 'status flood' });
  const warm = await call(server.url, 'POST', '/v1/events', {
    key,
    body: { type: 'warm', payload: {}, dedup_id: 'warm' },
  });
  assert.equal(warm.status, 202, warm.text);
  const ok = await boundedCall(server.url, 'GET', '/status');
  assert.equal(ok.status, 200, ok.text);
  await sleep(PROBE_FRESH_MS + 100);
  const before = probesRun();

  const stall = await stallPostgres();
  let answers: Array<Awaited<ReturnType<typeof boundedCall>>> = [];
  try {
    // 50 clients, each on connections of its own (both workers), for about 3 s.
    const until = Date.now() + 3000;
    const flood = async () => {
      const mine: typeof answers = [];
      while (Date.now() < until)
        mine.push(await boundedCall(server.url, 'GET', '/status', { headers: { connection: 'close' } }, 10_000));
      return mine;
    };
    answers = (await Promise.all(Array.from({ length: 50 }, flood))).flat();
  } finally {
    stall.resume();
  }
  assert.ok(answers.length >= 20, `${answers.length} answers`);
  for (const answer of answers) {
    assert.equal(answer.status, 503, answer.text);
    assert.equal(answer.body.checks.postgres, 'down');
    assert.match(answer.headers.get('retry-after') ?? '', /^\d+$/);
  }

  // Once Postgres answers again, an ingest with a dedup_id (the pool's queue) is served, and so is a repeat.
  const stored = await boundedCall(
    server.url,
    'POST',
    '/v1/events',
    { key, body: { type: 'after.stall', payload: {}, dedup_id: 'after-stall' } },
    15_000,
  );
  assert.equal(stored.status, 202, stored.text);
  const repeated = await boundedCall(
    server.url,
    'POST',
    '/v1/events',
    { key, body: { type: 'after.stall', payload: {}, dedup_id: 'after-stall' } },
    15_000,
  );
  assert.equal(repeated.status, 200, repeated.text);
  assert.equal(repeated.body.id, stored.body.id);

  await sleep(1500); // the log is written by the backends as they run what was queued
  const reached = probesRun() - before;
  // One probe per worker was in flight during the stall; the rest of the flood was answered from it.
  // (Each /status ran its own before: one per answer, here hundreds.)
  assert.ok(reached <= 6, `${reached} probes reached Postgres for ${answers.length} /status requests`);
  const back = await boundedCall(server.url, 'GET', '/status');
  assert.equal(back.status, 200, back.text);
});
