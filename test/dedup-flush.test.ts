import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Sql } from '../src/db/connect.js';
import { call, createOrgWithKey, sendEvent, type ApiResponse } from './helpers/api.js';
import { InProcessServer } from './helpers/in-process.js';
import { holdEventsLock, TestPostgres } from './helpers/postgres.js';

/**
 * Issue 14: a dedup flush that fails half-way (after its claims, before its events are in) must
 * fail as a whole, promptly, and leave the pool as it found it. Its old form, a COPY through the
 * `postgres` client inside `sql.begin`, hung on exactly this (porsager/postgres#1173): 503 only at
 * the flush timeout, and one connection "idle in transaction (aborted)" for good per failure.
 */

// A hang would show as an answer at the flush timeout; a prompt failure answers well within it.
const FLUSH_TIMEOUT_MS = 20_000;
const PROMPT_MS = 5_000;
// FLUSH_CONCURRENCY=1: requests sent while a flush runs all queue for the next one.
const POOL_MAX = 1 + 6; // flushConcurrency + 6 (src/cluster/http-app.ts)

let pg: TestPostgres;
let server: InProcessServer;
let db: Sql;
let base: string;
let key: string;
let orgId: string;

before(async () => {
  pg = await TestPostgres.start();
  const url = await pg.createDatabase('dedup_flush');
  server = await InProcessServer.start({
    databaseUrl: url,
    env: { FLUSH_TIMEOUT_MS: String(FLUSH_TIMEOUT_MS), FLUSH_CONCURRENCY: '1' },
  });
  base = server.url;
  db = pg.connect('dedup_flush');
  ({ key, orgId } = await createOrgWithKey(base));
  // Marked rows: 'flush.fail' makes the insert into events raise, 'flush.sleep' holds the flush
  // for 30 s. A BEFORE trigger on the partitioned table runs on every partition.
  await db.unsafe(`
    create function flush_test_marks() returns trigger language plpgsql as $$
    begin
      if new.type = 'flush.fail' then raise exception 'flush_test: refused marked row %', new.id; end if;
      if new.type = 'flush.sleep' then perform pg_sleep(30); end if;
      return new;
    end $$;
    create trigger flush_test_marks before insert on events for each row execute function flush_test_marks();`);
});

after(async () => {
  await db?.end({ timeout: 1 });
  await server?.stop();
  await pg?.stop();
});

function expectUnavailable(response: ApiResponse, what: string) {
  assert.equal(response.status, 503, `${what}: ${response.status} ${response.text}`);
  assert.equal(response.body?.error?.code, 'unavailable', `${what}: ${response.text}`);
  assert.match(response.headers.get('retry-after') ?? '', /^\d+$/, `${what}: no Retry-After`);
}

/** A call that must be answered within PROMPT_MS, timed. */
async function prompt<T>(what: string, request: Promise<T>): Promise<T> {
  const started = performance.now();
  const response = await request;
  const ms = performance.now() - started;
  assert.ok(
    ms < PROMPT_MS,
    `${what}: answered after ${Math.round(ms)} ms (a hung flush is only refused at the ${FLUSH_TIMEOUT_MS} ms flush timeout)`,
  );
  return response;
}

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`timed out waiting until ${what}`);
}

/** The app pool's sessions (application_name triggers-http) and their states. */
async function poolSessions(): Promise<string[]> {
  const rows = await db`select state from pg_stat_activity where application_name = 'triggers-http'`;
  return rows.map((row) => row.state as string);
}

async function expectPoolHealthy(what: string) {
  const states = await poolSessions();
  assert.ok(states.length <= POOL_MAX, `${what}: ${states.length} sessions for a pool of ${POOL_MAX}`);
  // 'starting': a session the pool is opening again (a backend in its startup), in no transaction.
  assert.deepEqual(
    states.filter((state) => state !== 'idle' && state !== 'active' && state !== 'starting'),
    [],
    `${what}: sessions left in a transaction`,
  );
}

async function storedCount(where: { dedupIds?: string[]; types?: string[] }): Promise<number> {
  const [row] = await db`
    select count(*)::int as n from events
    where org_id = ${orgId} and (dedup_id = any(${where.dedupIds ?? []}::text[]) or type = any(${where.types ?? []}::text[]))`;
  return row!.n as number;
}

async function claimCount(dedupIds: string[]): Promise<number> {
  const [row] =
    await db`select count(*)::int as n from event_dedup where org_id = ${orgId} and dedup_id = any(${dedupIds}::text[])`;
  return row!.n as number;
}

test('a dedup flush failing between its claims and its inserts: 503 for all its requests, nothing stored, no claim left, no connection leaked', async () => {
  await expectPoolHealthy('before');
  // Round 0: many requests in one flush. A flush held on a lock makes everything sent meanwhile
  // queue for the next one (FLUSH_CONCURRENCY=1), the failing one. Then more failing flushes
  // than the pool has connections, one batch request each: a leak per failure would exhaust it.
  for (let round = 0; round < POOL_MAX + 3; round++) {
    const dedupIds = [`fail-${round}-a`, `fail-${round}-b`, `fail-${round}-race`, `fail-${round}-idem`];
    const failing = () =>
      call(base, 'POST', '/v1/events/batch', {
        key,
        body: {
          events: [
            { type: 'mixed.dedup', payload: { round }, dedup_id: dedupIds[0] },
            { type: 'mixed.plain', payload: { round } },
            { type: 'flush.fail', payload: { round } },
          ],
        },
      });
    let answers: ApiResponse[];
    if (round === 0) {
      const lock = await holdEventsLock(db);
      let held: Promise<ApiResponse>;
      let sent: Promise<ApiResponse[]>;
      try {
        held = sendEvent(base, key, { type: 'held', payload: {} });
        await until(
          'the first flush waits on the lock',
          async () =>
            (
              await db`select 1 from pg_stat_activity where application_name like 'triggers-%' and wait_event_type = 'Lock'`
            ).length > 0,
        );
        sent = Promise.all([
          failing(),
          sendEvent(base, key, { type: 'single.dedup', payload: { round }, dedup_id: dedupIds[1] }),
          sendEvent(base, key, { type: 'single.plain', payload: { round } }),
          sendEvent(base, key, { type: 'single.idem', payload: { round } }, { 'idempotency-key': dedupIds[3]! }),
          ...Array.from({ length: 50 }, (_, i) =>
            sendEvent(base, key, { type: 'race', payload: { i }, dedup_id: dedupIds[2] }),
          ),
        ]);
        await new Promise((resolve) => setTimeout(resolve, 1000));
      } finally {
        lock.release();
        await lock.done;
      }
      answers = await prompt('round 0', sent);
      assert.equal((await held).status, 202);
    } else {
      answers = [await prompt(`round ${round}`, failing())];
    }
    answers.forEach((answer, i) => expectUnavailable(answer, `round ${round}, request ${i}`));
    assert.equal(
      await storedCount({ dedupIds, types: ['mixed.plain', 'single.plain', 'flush.fail'] }),
      0,
      'a refused flush stored events',
    );
    assert.equal(await claimCount(dedupIds), 0, 'a refused flush left a dedup claim');
    await expectPoolHealthy(`after round ${round}`);
  }

  // The next flushes work, and the refused dedup_ids are new, not "duplicate": stored once.
  const retried = await prompt(
    'retry',
    Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        sendEvent(base, key, { type: 'race', payload: { i }, dedup_id: 'fail-0-race' }),
      ),
    ),
  );
  assert.equal(retried.filter((r) => r.status === 202).length, 1, JSON.stringify(retried.map((r) => r.status)));
  assert.equal(retried.filter((r) => r.status === 200).length, 49);
  assert.equal(new Set(retried.map((r) => r.body.id)).size, 1);
  const single = await sendEvent(base, key, { type: 'single.dedup', payload: {}, dedup_id: 'fail-0-b' });
  assert.equal(single.status, 202, single.text);
  const again = await sendEvent(base, key, { type: 'single.dedup', payload: {}, dedup_id: 'fail-0-b' });
  assert.deepEqual(again.body, { id: single.body.id, status: 'duplicate', received_at: single.body.received_at });
  assert.equal(await storedCount({ dedupIds: ['fail-0-race', 'fail-0-b'] }), 2);
  await expectPoolHealthy('after the retries');
});

test('the backend of a dedup flush terminated mid-statement: a prompt 503, nothing stored, the pool recovers', async () => {
  const sessionsBefore = (await poolSessions()).length;
  const pending = sendEvent(base, key, { type: 'flush.sleep', payload: {}, dedup_id: 'terminated-1' });
  // The flush has claimed its key and sits in the events trigger: end its backend there.
  await until(
    'the flush sits in the trigger, and its backend is ended',
    async () =>
      (
        await db`
    select pg_terminate_backend(pid) from pg_stat_activity
    where application_name = 'triggers-http' and wait_event = 'PgSleep'`
      ).length === 1,
  );
  expectUnavailable(await prompt('terminated flush', pending), 'terminated flush');
  assert.equal(await storedCount({ dedupIds: ['terminated-1'] }), 0);
  assert.equal(await claimCount(['terminated-1']), 0);

  const retry = await prompt(
    'retry',
    sendEvent(base, key, { type: 'after.terminate', payload: {}, dedup_id: 'terminated-1' }),
  );
  assert.equal(retry.status, 202, retry.text);
  assert.equal(await storedCount({ dedupIds: ['terminated-1'] }), 1);
  const states = await poolSessions();
  assert.ok(states.length <= Math.max(sessionsBefore, POOL_MAX), `sessions grew: ${sessionsBefore} → ${states.length}`);
  await expectPoolHealthy('after the termination');
});

test('a claim older than the dedup window is taken again: 202 with a new id, then duplicates of it', async () => {
  const first = await sendEvent(base, key, { type: 'window', payload: {}, dedup_id: 'window-1' });
  assert.equal(first.status, 202);
  await db`update event_dedup set received_at = now() - interval '25 hours' where org_id = ${orgId} and dedup_id = 'window-1'`;
  const retaken = await sendEvent(base, key, { type: 'window', payload: {}, dedup_id: 'window-1' });
  assert.equal(retaken.status, 202, retaken.text);
  assert.notEqual(retaken.body.id, first.body.id);
  const duplicate = await sendEvent(base, key, { type: 'window', payload: {}, dedup_id: 'window-1' });
  assert.deepEqual(duplicate.body, { id: retaken.body.id, status: 'duplicate', received_at: retaken.body.received_at });
});

test('a flush mixing dedup and plain events stores every field as sent', async () => {
  const awkward = {
    quote: 'a"b',
    slash: 'c\\d',
    tab: 'e\tf',
    line: 'g\nh',
    braces: '{,}',
    unicode: 'Zoë 😀',
    nil: null,
    n: [1.5, -2e-7],
  };
  const response = await call(base, 'POST', '/v1/events/batch', {
    key,
    body: {
      events: [
        { type: 'mix.a', payload: awkward, dedup_id: 'mix "1", {x}\\y' },
        { type: 'mix.b', payload: {}, occurred_at: '2026-01-01T10:00:00.5+02:00' },
        { type: 'mix.c', payload: { k: 1 }, dedup_id: 'mix "1", {x}\\y' },
        { type: 'mix.d', payload: { k: 2 }, dedup_id: 'NULL' },
      ],
    },
  });
  assert.equal(response.status, 200, response.text);
  assert.deepEqual(
    response.body.results.map((r: { status: string }) => r.status),
    ['accepted', 'accepted', 'duplicate', 'accepted'],
  );
  assert.equal(response.body.results[2].id, response.body.results[0].id);
  const a = await call(base, 'GET', `/v1/events/${response.body.results[0].id}`, { key });
  assert.deepEqual(a.body.payload, awkward);
  assert.ok(a.text.includes('"payload":' + JSON.stringify(awkward) + ','), `payload not stored as sent: ${a.text}`);
  assert.equal(a.body.dedup_id, 'mix "1", {x}\\y');
  assert.equal(a.body.occurred_at, null);
  const b = await call(base, 'GET', `/v1/events/${response.body.results[1].id}`, { key });
  assert.equal(b.body.dedup_id, null);
  assert.equal(b.body.occurred_at, '2026-01-01T08:00:00.500Z');
  const d = await call(base, 'GET', `/v1/events/${response.body.results[3].id}`, { key });
  assert.equal(d.body.dedup_id, 'NULL');
});
