import assert from 'node:assert/strict';
import diagnostics_channel from 'node:diagnostics_channel';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import type { Sql } from '../src/db/connect.js';
import { FLUSH_MAX_CHARACTERS } from '../src/ingest/batcher.js';
import { flushFinishedChannel, type FlushFinished } from '../src/ingest/channels.js';
import { normaliseTimestamp } from '../src/ingest/validate.js';
import { call, createOrgWithKey, sendEvent, type ApiResponse } from './helpers/api.js';
import { InProcessServer } from './helpers/in-process.js';
import { holdEventsLock, TestPostgres } from './helpers/postgres.js';

/**
 * Issue 23: nothing one org sends can fail another org's request (API.md §3). Found from outside:
 * an org posting occurred_at "0000-01-01T00:00:00Z" got 503 (not 422), and so did a fifth of
 * another org's requests: Postgres refused the value and the whole flush failed. Here: values at
 * every column's edges are 422 for that event alone, and a row that Postgres refuses for a reason
 * validation cannot foresee is found by splitting the flush, so only it is refused and its
 * neighbours (other orgs, the same flush) get 202 and are stored. Through the text COPY, the
 * binary COPY (flushes of 64 rows or more), the dedup statement, and both COPY clients.
 */

let pg: TestPostgres;
const servers: InProcessServer[] = [];
const pools: Sql[] = [];

before(async () => {
  pg = await TestPostgres.start();
});

after(async () => {
  for (const pool of pools) await pool.end({ timeout: 1 });
  for (const server of servers) await server.stop();
  await pg?.stop();
});

interface Setup {
  base: string;
  db: Sql;
  attacker: { key: string; orgId: string };
  victim: { key: string; orgId: string };
}

async function startSetup(name: string, env: Record<string, string>): Promise<Setup> {
  const url = await pg.createDatabase(name);
  // FLUSH_CONCURRENCY=1: what is sent while a flush runs queues for the next one, so the orgs'
  // events share flushes.
  const server = await InProcessServer.start({ databaseUrl: url, env: { FLUSH_CONCURRENCY: '1', ...env } });
  servers.push(server);
  const db = pg.connect(name);
  pools.push(db);
  const attacker = await createOrgWithKey(server.url, { name: 'attacker' });
  const victim = await createOrgWithKey(server.url, { name: 'victim' });
  // A row Postgres refuses that no validation can foresee: a data-class error raised by a trigger
  // for the marked type (a BEFORE trigger on the partitioned table runs on every partition).
  await db.unsafe(`
    create function isolation_test_refuse() returns trigger language plpgsql as $$
    begin
      if new.type = 'refuse.me' then raise exception using errcode = '22023', message = 'isolation_test: refused marked row'; end if;
      if new.type = 'sleep.me' then perform pg_sleep(30); end if;
      return new;
    end $$;
    create trigger isolation_test_refuse before insert on events for each row execute function isolation_test_refuse();`);
  return { base: server.url, db, attacker, victim };
}

async function storedIds(db: Sql, ids: string[]): Promise<Set<string>> {
  const rows = await db`select id from events where id = any(${ids}::uuid[])`;
  return new Set(rows.map((row) => row.id as string));
}

async function countOf(db: Sql, orgId: string, types: string[]): Promise<number> {
  const [row] = await db`select count(*)::int as n from events where org_id = ${orgId} and type = any(${types}::text[])`;
  return row!.n as number;
}

function expectRefusedAlone(response: ApiResponse, what: string) {
  assert.equal(response.status, 422, `${what}: ${response.status} ${response.text}`);
  assert.equal(response.body.error.code, 'validation_failed', what);
}

/** Flushes as the batcher reports them, while `during` runs. */
async function watchFlushes<T>(during: () => Promise<T>): Promise<{ result: T; flushes: FlushFinished[] }> {
  const flushes: FlushFinished[] = [];
  const listener = (message: unknown) => flushes.push(message as FlushFinished);
  diagnostics_channel.subscribe(flushFinishedChannel.name, listener);
  try {
    return { result: await during(), flushes };
  } finally {
    diagnostics_channel.unsubscribe(flushFinishedChannel.name, listener);
  }
}

/**
 * Sends everything `send` starts into one flush: a first event waits on a lock on events, so
 * the rest queue behind it (FLUSH_CONCURRENCY=1) and go together once the lock is gone.
 */
async function inOneFlush<T>(setup: Setup, send: () => Promise<T>): Promise<T> {
  const lock = await holdEventsLock(setup.db);
  let sent: Promise<T>;
  let held: Promise<ApiResponse>;
  try {
    held = sendEvent(setup.base, setup.victim.key, { type: 'held', payload: {} });
    for (let i = 0; i < 200; i++) {
      if ((await setup.db`select 1 from pg_stat_activity where application_name like 'triggers-%' and wait_event_type = 'Lock'`).length > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    sent = send();
    await new Promise((resolve) => setTimeout(resolve, 300));
  } finally {
    lock.release();
    await lock.done;
  }
  assert.equal((await held).status, 202);
  return sent;
}

const OUT_OF_RANGE = ['0000-01-01T00:00:00Z', '0001-01-01T00:30:00+01:00', '9999-12-31T23:30:00-01:00'];

test('occurred_at: years 0001-9999 once in UTC, real calendar days, up to 9 fraction digits', () => {
  const cases: Array<[string, string | null]> = [
    ['0000-01-01T00:00:00Z', null], ['0001-01-01T00:30:00+01:00', null], ['9999-12-31T23:30:00-01:00', null],
    ['0000-12-31T23:30:00-01:00', '0001-01-01T00:30:00.000Z'], ['0001-01-01T00:00:00Z', '0001-01-01T00:00:00.000Z'],
    ['9999-12-31T23:59:59.999999999Z', '9999-12-31T23:59:59.999Z'], ['9999-12-31T23:59:59.999+00:00', '9999-12-31T23:59:59.999Z'],
    ['10000-01-01T00:00:00Z', null], ['2021-02-29T00:00:00Z', null], ['2024-02-29T00:00:00Z', '2024-02-29T00:00:00.000Z'],
    ['2000-02-29T00:00:00Z', '2000-02-29T00:00:00.000Z'], ['1900-02-29T00:00:00Z', null], ['2021-02-30T00:00:00Z', null],
    ['2021-04-31T00:00:00Z', null], ['2021-12-31T10:00:00.123456789+02:00', '2021-12-31T08:00:00.123Z'],
    ['2016-12-31T23:59:60Z', null], ['2021-01-01T00:00:00', null], ['2021-01-01T00:00:00+24:00', null],
  ];
  for (const [input, expected] of cases) assert.equal(normaliseTimestamp(input), expected, input);
});

for (const copyClient of ['wire', 'postgres']) {
  describe(`INGEST_COPY_CLIENT=${copyClient}`, () => {
    let setup: Setup;
    before(async () => {
      setup = await startSetup(`isolation_${copyClient}`, { INGEST_COPY_CLIENT: copyClient });
    });

    test('occurred_at outside years 0001-9999 in UTC: 422 for that event alone, the other org\'s events all 202 and stored', async () => {
      const { base, db, attacker, victim } = setup;
      const { result: answers, flushes } = await watchFlushes(() => inOneFlush(setup, () => Promise.all([
        ...OUT_OF_RANGE.flatMap((occurredAt, i) => [
          sendEvent(base, attacker.key, { type: 'bad.time', payload: { i }, occurred_at: occurredAt }),
          sendEvent(base, attacker.key, { type: 'bad.time', payload: { i }, occurred_at: occurredAt, dedup_id: `bad-${i}` }),
        ]),
        call(base, 'POST', '/v1/events/batch', { key: attacker.key, body: { events: [
          ...OUT_OF_RANGE.map((occurredAt) => ({ type: 'bad.time', payload: {}, occurred_at: occurredAt })),
          { type: 'good.time', payload: {}, occurred_at: '0001-01-01T00:30:00+00:30' },
          { type: 'good.time', payload: {}, occurred_at: '0000-12-31T23:30:00-01:00' },
        ] } }),
        ...Array.from({ length: 8 }, (_, i) => sendEvent(base, victim.key, { type: 'victim.single', payload: { i } })),
        sendEvent(base, victim.key, { type: 'victim.single', payload: {}, dedup_id: 'victim-time-1' }),
        call(base, 'POST', '/v1/events/batch', { key: victim.key, body: { events: Array.from({ length: 70 }, (_, i) => ({ type: 'victim.batch', payload: { i } })) } }),
      ])));
      const singles = answers.slice(0, OUT_OF_RANGE.length * 2);
      singles.forEach((answer, i) => {
        expectRefusedAlone(answer, `attacker single ${i}`);
        assert.deepEqual(answer.body.error.details.map((d: { field: string }) => d.field), ['occurred_at']);
      });
      const attackerBatch = answers[OUT_OF_RANGE.length * 2]!;
      assert.equal(attackerBatch.status, 200, attackerBatch.text);
      assert.deepEqual(attackerBatch.body.results.map((r: { status: string }) => r.status), ['rejected', 'rejected', 'rejected', 'accepted', 'accepted']);
      const victimAnswers = answers.slice(OUT_OF_RANGE.length * 2 + 1);
      const victimIds: string[] = [];
      for (const answer of victimAnswers) {
        assert.ok(answer.status === 202 || answer.status === 200, `victim: ${answer.status} ${answer.text}`);
        if (answer.body.results) {
          assert.equal(answer.body.accepted, 70, answer.text);
          victimIds.push(...answer.body.results.map((r: { id: string }) => r.id));
        } else victimIds.push(answer.body.id);
      }
      const stored = await storedIds(db, victimIds);
      assert.deepEqual(victimIds.filter((id) => !stored.has(id)), []);
      assert.equal(await countOf(db, attacker.orgId, ['bad.time']), 0);
      assert.equal(await countOf(db, attacker.orgId, ['good.time']), 2);
      // The victims' 70-event batch went in a flush with the attacker's events: a binary COPY.
      assert.ok(flushes.some((flush) => flush.rows >= 70 && flush.ok), `flushes: ${JSON.stringify(flushes)}`);
    });

    test('occurred_at out of range in a binary COPY (a batch of 64 or more): 422 for that item, not stored as year 0 or 10000', async () => {
      const { base, db, attacker } = setup;
      const events = Array.from({ length: 70 }, (_, i) => ({ type: 'binary.time', payload: { i }, ...(i < OUT_OF_RANGE.length ? { occurred_at: OUT_OF_RANGE[i] } : {}) }));
      const response = await call(base, 'POST', '/v1/events/batch', { key: attacker.key, body: { events } });
      assert.equal(response.status, 200, response.text);
      assert.equal(response.body.accepted, 70 - OUT_OF_RANGE.length, response.text);
      for (let i = 0; i < OUT_OF_RANGE.length; i++) {
        assert.equal(response.body.results[i].status, 'rejected');
        assert.equal(response.body.results[i].error.details[0].field, 'occurred_at');
      }
      const [row] = await db`select count(*)::int as n from events where org_id = ${attacker.orgId} and type = 'binary.time' and occurred_at is not null`;
      assert.equal(row!.n, 0, 'a timestamp outside years 1-9999 was stored');
    });

    test('a received_at that no partition takes (the server\'s clock: every event alike) stays a 503, not a 422 per event', async () => {
      const { base, db, victim } = setup;
      const day = new Date().toISOString().slice(0, 10);
      const partition = `events_${day.replaceAll('-', '')}`;
      await db.unsafe(`alter table events detach partition ${partition}`);
      let answers: ApiResponse[];
      try {
        answers = await Promise.all([
          sendEvent(base, victim.key, { type: 'no.partition', payload: {} }),
          sendEvent(base, victim.key, { type: 'no.partition', payload: {}, dedup_id: `no-partition-${copyClient}` }),
          call(base, 'POST', '/v1/events/batch', { key: victim.key, body: { events: Array.from({ length: 70 }, () => ({ type: 'no.partition', payload: {} })) } }),
        ]);
      } finally {
        const next = new Date(Date.parse(day) + 86_400_000).toISOString().slice(0, 10);
        await db.unsafe(`alter table events attach partition ${partition} for values from ('${day} 00:00+00') to ('${next} 00:00+00')`);
      }
      for (const answer of answers) {
        assert.equal(answer.status, 503, answer.text);
        assert.equal(answer.body.error.code, 'unavailable');
      }
      assert.equal(await countOf(db, victim.orgId, ['no.partition']), 0);
    });

    for (const dedup of [false, true]) {
      test(`an outage is not split: the backend of a ${dedup ? 'dedup' : 'COPY'} flush terminated mid-flush is a prompt 503 for it, nothing stored, the next flush works`, async () => {
        const { base, db, victim } = setup;
        const tag = `${copyClient}-${dedup}`;
        const pending = Promise.all([
          sendEvent(base, victim.key, { type: 'sleep.me', payload: {}, ...(dedup ? { dedup_id: `sleep-${tag}` } : {}) }),
          sendEvent(base, victim.key, { type: `terminated.${tag}`, payload: {} }),
        ]);
        for (let i = 0; i < 200; i++) {
          const ended = await db`select pg_terminate_backend(pid) from pg_stat_activity where application_name like 'triggers-%' and wait_event = 'PgSleep'`;
          if (ended.length > 0) break;
          await new Promise((resolve) => setTimeout(resolve, 25));
        }
        const started = performance.now();
        for (const answer of await pending) {
          assert.equal(answer.status, 503, answer.text);
          assert.equal(answer.body.error.code, 'unavailable');
        }
        assert.ok(performance.now() - started < 3000, `answered ${Math.round(performance.now() - started)} ms after the termination`);
        assert.equal(await countOf(db, victim.orgId, ['sleep.me', `terminated.${tag}`]), 0);
        const after = await Promise.all([
          sendEvent(base, victim.key, { type: `after.${tag}`, payload: {} }),
          sendEvent(base, victim.key, { type: `after.${tag}`, payload: {}, ...(dedup ? { dedup_id: `sleep-${tag}` } : {}) }),
        ]);
        for (const answer of after) assert.equal(answer.status, 202, answer.text);
      });
    }

    for (const path of ['text COPY', 'binary COPY', 'dedup statement']) {
      test(`a row Postgres refuses in a flush (${path}): only it is refused (422), its neighbours of the other org get 202 and are stored once`, async () => {
        const { base, db, attacker, victim } = setup;
        const tag = `${copyClient}.${path.split(' ')[0]}`;
        const dedup = path === 'dedup statement';
        const victimCount = path === 'binary COPY' ? 80 : 6;
        const { result: answers, flushes } = await watchFlushes(() => inOneFlush(setup, () => Promise.all([
          sendEvent(base, attacker.key, { type: 'refuse.me', payload: { tag }, ...(dedup ? { dedup_id: `refused-${tag}` } : {}) }),
          sendEvent(base, attacker.key, { type: `attacker.${tag}`, payload: { fine: true } }),
          ...Array.from({ length: victimCount }, (_, i) => sendEvent(base, victim.key, { type: `victim.${tag}`, payload: { i }, ...(dedup && i % 2 === 0 ? { dedup_id: `v-${tag}-${i}` } : {}) })),
        ])));
        const refusedFlush = flushes.find((flush) => flush.rows >= victimCount + 2);
        assert.ok(refusedFlush, `the events did not share a flush: ${JSON.stringify(flushes)}`);
        assert.equal(refusedFlush.stored, victimCount + 1, JSON.stringify(refusedFlush));
        const [refused, fine, ...victims] = answers;
        expectRefusedAlone(refused!, 'the refused row');
        assert.match(refused!.body.error.details[0].message, /cannot be stored \(SQLSTATE 22023/);
        assert.equal(fine!.status, 202, fine!.text);
        victims.forEach((answer, i) => assert.equal(answer.status, 202, `victim ${i}: ${answer.text}`));
        const ids = victims.map((answer) => answer.body.id as string);
        const stored = await storedIds(db, [...ids, fine!.body.id]);
        assert.equal(stored.size, victimCount + 1);
        // Each stored once: the refused sub-flushes stored nothing, so the retries made no copies.
        assert.equal(await countOf(db, victim.orgId, [`victim.${tag}`]), victimCount);
        assert.equal(await countOf(db, attacker.orgId, ['refuse.me']), 0);
        if (dedup) {
          const [claim] = await db`select count(*)::int as n from event_dedup where org_id = ${attacker.orgId} and dedup_id = ${`refused-${tag}`}`;
          assert.equal(claim!.n, 0, 'the refused event left its dedup claim');
          const retry = await sendEvent(base, attacker.key, { type: 'fixed', payload: {}, dedup_id: `refused-${tag}` });
          assert.equal(retry.status, 202, `the refused dedup_id must be new: ${retry.text}`);
          const again = await sendEvent(base, victim.key, { type: 'again', payload: {}, dedup_id: `v-${tag}-0` });
          assert.equal(again.status, 200, again.text);
          assert.equal(again.body.id, victims[0]!.body.id);
        }
      });
    }
  });
}

describe('property: one org sends edge values in every field while another ingests', () => {
  let setup: Setup;
  before(async () => {
    setup = await startSetup('isolation_property', {});
  });

  const LONE = ['\ud800', '\udfff', 'a\udc00b', '\ud83d'];
  const edgeString = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.string({ unit: 'grapheme', maxLength: 20 }),
    fc.constantFrom('', '\u0000', 'a\u0000b', '\\u0000', '\\', '\t\n\r', 'NULL', '\\N', '😀', '\u2028', '\ufeff', '\uffff', ...LONE),
    fc.tuple(fc.string({ maxLength: 5 }), fc.constantFrom(...LONE, '\u0000'), fc.string({ maxLength: 5 })).map(([a, b, c]) => a + b + c),
    fc.integer({ min: 120, max: 300 }).map((n) => 'd'.repeat(n)),
    fc.integer({ min: 1, max: 300 }).map((n) => 'é'.repeat(n)),
  );
  const pad = (n: number, width: number) => String(n).padStart(width, '0');
  const timestamp = fc.oneof(
    fc.record({
      year: fc.constantFrom(0, 1, 2, 99, 100, 1582, 1969, 1970, 2000, 2024, 9998, 9999),
      month: fc.integer({ min: 0, max: 13 }),
      day: fc.constantFrom(0, 1, 28, 29, 30, 31, 32),
      hour: fc.constantFrom(0, 1, 23, 24),
      minute: fc.constantFrom(0, 30, 59, 60),
      second: fc.constantFrom(0, 59, 60, 61),
      fraction: fc.constantFrom('', '.5', '.999', '.123456', '.123456789', '.9999999999'),
      zone: fc.constantFrom('Z', 'z', '+00:00', '-00:00', '+01:00', '-01:00', '+00:30', '+14:00', '-12:00', '+23:59', '+24:00', '+99:99', ''),
    }).map((t) => `${pad(t.year, 4)}-${pad(t.month, 2)}-${pad(t.day, 2)}T${pad(t.hour, 2)}:${pad(t.minute, 2)}:${pad(t.second, 2)}${t.fraction}${t.zone}`),
    fc.constantFrom(...OUT_OF_RANGE, '0001-01-01T00:00:00Z', '0001-01-01T00:00:00.000+00:01', '9999-12-31T23:59:59.999Z', '9999-12-31T23:59:59.9999999Z',
      '10000-01-01T00:00:00Z', '-0001-01-01T00:00:00Z', '+010000-01-01T00:00:00.000Z', '2016-12-31T23:59:60Z', '2021-02-29T00:00:00Z', '2024-02-29T12:00:00Z'),
    edgeString,
    fc.constantFrom(0, -1, 1e308, null, true, [], {}),
  );
  const hugeNumber = fc.constantFrom(1e308, -1e308, Number.MAX_VALUE, Number.MIN_VALUE, 5e-324, 2 ** 53 + 1, -(2 ** 63), 0.1 + 0.2, -0);
  const nested = (depth: number) => {
    let value: unknown = 'deep';
    for (let i = 0; i < depth; i++) value = i % 2 === 0 ? [value] : { k: value };
    return value;
  };
  const payload = fc.oneof(
    { arbitrary: fc.dictionary(edgeString, fc.oneof(edgeString, hugeNumber, fc.jsonValue({ maxDepth: 3 })), { maxKeys: 5 }), weight: 8 },
    { arbitrary: fc.constantFrom(95, 98, 99, 100, 101, 150).map((depth) => ({ n: nested(depth) })), weight: 2 },
    { arbitrary: fc.constantFrom(200, 255, 256, 257, 300).map((kib) => ({ big: 'x'.repeat(kib * 1024 - 10) })), weight: 1 },
    { arbitrary: fc.constantFrom(null, [], 'text', 1), weight: 1 },
  );
  // Mostly valid types, so that the other fields' edge values reach a flush.
  const type = fc.oneof(
    { arbitrary: fc.constantFrom('edge.type', 'a', 'A.b_c:d-e'), weight: 6 },
    { arbitrary: edgeString, weight: 1 },
    { arbitrary: fc.integer({ min: 120, max: 200 }).map((n) => 't'.repeat(n)), weight: 1 },
  );
  const dedupId = fc.oneof(edgeString, fc.constantFrom(undefined, null, 1, ''), fc.integer({ min: 250, max: 260 }).map((n) => 'k'.repeat(n)),
    fc.integer({ min: 120, max: 130 }).map((n) => '😀'.repeat(n)));
  const event = fc.record({ type, payload, occurred_at: timestamp, dedup_id: dedupId }, { requiredKeys: ['type', 'payload'] });
  // Raw JSON a client can send that JSON.stringify never writes: numbers out of double range,
  // escapes of NUL and lone surrogates, paired surrogate escapes, overlong nesting.
  const rawPayload = fc.constantFrom('{"n":1e400}', '{"n":-1e400}', '{"n":1e-400}', '{"s":"\\u0000"}', '{"s":"\\ud800"}', '{"s":"\\udc00\\ud800"}',
    '{"s":"\\ud83d\\ude00"}', '{"\\u0000":1}', '{"n":123456789012345678901234567890}', '{"a":' + '['.repeat(120) + ']'.repeat(120) + '}');

  test('text COPY, binary COPY, dedup statement: the victim sees only 2xx and every 202 stored once; the attacker only 202/200/4xx', async () => {
    const { base, db, attacker, victim } = setup;
    const victimIds: string[] = [];
    let attackerAccepted = 0;
    let runs = 0;
    const started = performance.now();
    const seen = new Map<number, number>();
    const paths = new Map<string, number>();
    const { flushes } = await watchFlushes(() => fc.assert(fc.asyncProperty(
      fc.constantFrom('text COPY', 'binary COPY', 'dedup statement'),
      fc.array(event, { minLength: 1, maxLength: 6 }),
      fc.array(event, { minLength: 0, maxLength: 70 }),
      fc.option(rawPayload),
      async (path, singles, batch, raw) => {
        // Every execution (shrinking included) has its own dedup ids.
        const salt = ++runs;
        paths.set(path, (paths.get(path) ?? 0) + 1);
        const dedup = path === 'dedup statement';
        // A flush with any dedup_id is the dedup statement; without, a COPY: binary from 64 rows
        // (the victim's batch of 66 makes it so), text below. Dedup ids are made unique per run,
        // so that a repeat is this run's duplicate, not an older one's.
        const shaped = (e: Record<string, unknown>) => {
          if (!dedup) {
            const { dedup_id: _dropped, ...rest } = e;
            return rest;
          }
          return typeof e.dedup_id === 'string' && e.dedup_id !== '' ? { ...e, dedup_id: `${salt}-${e.dedup_id}` } : e;
        };
        const victimSends: Array<Promise<ApiResponse>> = [
          sendEvent(base, victim.key, { type: 'victim.single', payload: { salt } }),
          sendEvent(base, victim.key, { type: 'victim.single', payload: { salt }, ...(dedup ? { dedup_id: `vs-${salt}` } : {}) }),
        ];
        if (path !== 'text COPY') {
          const victimBatch = Array.from({ length: 66 }, (_, i) => ({ type: 'victim.batch', payload: { i, salt }, ...(dedup && i === 0 ? { dedup_id: `v-${salt}` } : {}) }));
          victimSends.push(call(base, 'POST', '/v1/events/batch', { key: victim.key, body: { events: victimBatch } }));
        }
        const attackerSends = [
          ...singles.map((e) => sendEvent(base, attacker.key, shaped(e))),
          batch.length > 0 ? call(base, 'POST', '/v1/events/batch', { key: attacker.key, body: { events: batch.map(shaped) } }) : null,
          raw ? call(base, 'POST', '/v1/events', { key: attacker.key, raw: `{"type":"raw","payload":${raw}}`, headers: { 'content-type': 'application/json' } }) : null,
        ];
        const answers = await Promise.all([...attackerSends, ...victimSends]);
        const victimAnswers = answers.slice(attackerSends.length) as ApiResponse[];
        for (const answer of victimAnswers) {
          assert.ok(answer.status === 202 || answer.status === 200, `victim got ${answer.status} ${answer.text}`);
          if (answer.body.results) {
            assert.equal(answer.body.accepted, 66, answer.text);
            for (const result of answer.body.results) victimIds.push(result.id);
          } else victimIds.push(answer.body.id);
        }
        for (const answer of answers.slice(0, attackerSends.length)) {
          if (answer === null) continue;
          seen.set(answer.status, (seen.get(answer.status) ?? 0) + 1);
          assert.ok(answer.status === 202 || answer.status === 200 || (answer.status >= 400 && answer.status < 500), `attacker got ${answer.status} ${answer.text}`);
          if (answer.status === 202) attackerAccepted++;
          if (answer.body?.results) {
            for (const result of answer.body.results) {
              assert.ok(result.status !== 'rejected' || result.error.code !== 'unavailable', `attacker batch item: ${JSON.stringify(result)}`);
              if (result.status === 'accepted') attackerAccepted++;
            }
          }
        }
      },
    ), { numRuns: Number(process.env.ISOLATION_RUNS ?? 150), seed: process.env.ISOLATION_SEED ? Number(process.env.ISOLATION_SEED) : undefined }));
    // Flushes of 64 rows or more without a dedup_id went as binary COPY: the victim's batches of 66 made many.
    assert.ok(flushes.filter((flush) => flush.rows >= 64).length > 10, `few large flushes: ${flushes.length} flushes`);
    assert.ok(flushes.every((flush) => flush.ok), 'a flush failed as a whole');
    const stored = await storedIds(db, victimIds);
    assert.deepEqual(victimIds.filter((id) => !stored.has(id)), [], 'a victim 202 is not stored');
    assert.equal(await countOf(db, victim.orgId, ['victim.single', 'victim.batch']), victimIds.length, 'victim events stored twice');
    const [row] = await db`select count(*)::int as n from events where org_id = ${attacker.orgId}`;
    assert.equal(row!.n, attackerAccepted, 'the attacker\'s stored events are not exactly its accepted ones');
    // Nothing stored outside what the contract allows (a binary COPY once stored years 0 and 10000).
    const [outside] = await db`
      select count(*)::int as n from events
      where org_id = ${attacker.orgId} and (occurred_at < '0001-01-01T00:00:00Z' or occurred_at >= '9999-12-31T23:59:59.999Z'::timestamptz + interval '1 millisecond')`;
    assert.equal(outside!.n, 0, 'an occurred_at outside years 0001-9999 was stored');
    // What was stored reads back: the inbox of the attacker's org answers.
    const inbox = await call(base, 'GET', '/v1/inbox?limit=1000', { key: attacker.key });
    assert.equal(inbox.status, 200, inbox.text);
    console.log(`# ${runs} runs (${JSON.stringify(Object.fromEntries(paths))}), ${flushes.length} flushes, in ${Math.round(performance.now() - started)} ms; attacker statuses ${JSON.stringify(Object.fromEntries(seen))}, ${attackerAccepted} accepted`);
  });
});

describe('flushes are split by size', () => {
  let setup: Setup;
  before(async () => {
    setup = await startSetup('isolation_bytes', {});
  });

  test('256 KiB payloads, with and without dedup_id: no flush over 16 Mi characters, every answer right, each event stored once', async () => {
    const { base, db, attacker } = setup;
    const big = 'x'.repeat(256 * 1024 - 64);
    const perFlush = Math.floor(FLUSH_MAX_CHARACTERS / (big.length + 20));
    const count = 160;
    const { result: answers, flushes } = await watchFlushes(() => Promise.all(Array.from({ length: count }, (_, i) => {
      // Even: plain (COPY); odd: a dedup_id, each sent twice (the second is a duplicate of the first).
      const dedup = i % 2 === 1 ? { dedup_id: `big-${i >> 2}` } : {};
      return sendEvent(base, attacker.key, { type: 'big', payload: { i, big }, ...dedup });
    })));
    const busiest = Math.max(...flushes.map((flush) => flush.rows));
    const seconds = Math.max(...flushes.map((flush) => flush.seconds));
    console.log(`# ${JSON.stringify(flushes.map((f) => [f.rows, Math.round(f.seconds * 1000)]))}`);
    console.log(`# ${flushes.length} flushes, at most ${busiest} rows (${perFlush} fit in ${FLUSH_MAX_CHARACTERS} characters); slowest ${Math.round(seconds * 1000)} ms`);
    assert.ok(busiest <= perFlush, `a flush of ${busiest} payloads of 256 KiB: over the budget of ${perFlush}`);
    assert.ok(flushes.some((flush) => flush.rows > 1), 'large events are still batched');
    assert.ok(flushes.every((flush) => flush.ok), JSON.stringify(flushes.filter((flush) => !flush.ok)));
    const byDedup = new Map<string, ApiResponse[]>();
    answers.forEach((answer, i) => {
      assert.ok(answer.status === 202 || answer.status === 200, `${i}: ${answer.status} ${answer.text.slice(0, 300)}`);
      if (i % 2 === 1) byDedup.set(`big-${i >> 2}`, [...(byDedup.get(`big-${i >> 2}`) ?? []), answer]);
      else assert.equal(answer.status, 202);
    });
    for (const [dedupId, pair] of byDedup) {
      assert.deepEqual(pair.map((answer) => answer.status).sort(), [200, 202], dedupId);
      assert.equal(pair[0]!.body.id, pair[1]!.body.id, dedupId);
    }
    const [row] = await db`select count(*)::int as n, count(distinct id)::int as ids, min(length(payload::text))::int as shortest from events where org_id = ${attacker.orgId} and type = 'big'`;
    assert.deepEqual(row, { n: count * 3 / 4, ids: count * 3 / 4, shortest: JSON.stringify({ i: 0, big }).length });
  });
});
