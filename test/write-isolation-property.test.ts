import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { FLUSH_MAX_CHARACTERS } from '../src/ingest/batcher.js';
import { call, sendEvent, type ApiResponse } from './helpers/api.js';
import {
  countOf,
  OUT_OF_RANGE,
  startSetup,
  stopSetups,
  storedIds,
  watchFlushes,
  type Setup,
} from './helpers/isolation.js';
import { TestPostgres } from './helpers/postgres.js';

/**
 * Issue 23, across orgs (API.md §3: "One tenant cannot hurt another"): one org sends values at the
 * edges of every field while another ingests valid events, through the text COPY, the binary COPY
 * and the dedup statement; and flushes of large payloads stay under the size budget. The targeted
 * cases (a row Postgres refuses, out-of-range times, outages) are in write-isolation.test.ts.
 * Replay a failure with ISOLATION_SEED=<seed> (printed by fast-check); ISOLATION_RUNS sets the runs.
 */

let pg: TestPostgres;

before(async () => {
  pg = await TestPostgres.start();
});

after(async () => {
  await stopSetups();
  await pg?.stop();
});

describe('property: one org sends edge values in every field while another ingests', () => {
  let setup: Setup;
  before(async () => {
    setup = await startSetup(pg, 'isolation_property', {});
  });

  const LONE = ['\ud800', '\udfff', 'a\udc00b', '\ud83d'];
  const edgeString = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.string({ unit: 'grapheme', maxLength: 20 }),
    fc.constantFrom(
      '',
      '\u0000',
      'a\u0000b',
      '\\u0000',
      '\\',
      '\t\n\r',
      'NULL',
      '\\N',
      '😀',
      '\u2028',
      '\ufeff',
      '\uffff',
      ...LONE,
    ),
    fc
      .tuple(fc.string({ maxLength: 5 }), fc.constantFrom(...LONE, '\u0000'), fc.string({ maxLength: 5 }))
      .map(([a, b, c]) => a + b + c),
    fc.integer({ min: 120, max: 300 }).map((n) => 'd'.repeat(n)),
    fc.integer({ min: 1, max: 300 }).map((n) => 'é'.repeat(n)),
  );
  const pad = (n: number, width: number) => String(n).padStart(width, '0');
  const timestamp = fc.oneof(
    fc
      .record({
        year: fc.constantFrom(0, 1, 2, 99, 100, 1582, 1969, 1970, 2000, 2024, 9998, 9999),
        month: fc.integer({ min: 0, max: 13 }),
        day: fc.constantFrom(0, 1, 28, 29, 30, 31, 32),
        hour: fc.constantFrom(0, 1, 23, 24),
        minute: fc.constantFrom(0, 30, 59, 60),
        second: fc.constantFrom(0, 59, 60, 61),
        fraction: fc.constantFrom('', '.5', '.999', '.123456', '.123456789', '.9999999999'),
        zone: fc.constantFrom(
          'Z',
          'z',
          '+00:00',
          '-00:00',
          '+01:00',
          '-01:00',
          '+00:30',
          '+14:00',
          '-12:00',
          '+23:59',
          '+24:00',
          '+99:99',
          '',
        ),
      })
      .map(
        (t) =>
          `${pad(t.year, 4)}-${pad(t.month, 2)}-${pad(t.day, 2)}T${pad(t.hour, 2)}:${pad(t.minute, 2)}:${pad(t.second, 2)}${t.fraction}${t.zone}`,
      ),
    fc.constantFrom(
      ...OUT_OF_RANGE,
      '0001-01-01T00:00:00Z',
      '0001-01-01T00:00:00.000+00:01',
      '9999-12-31T23:59:59.999Z',
      '9999-12-31T23:59:59.9999999Z',
      '10000-01-01T00:00:00Z',
      '-0001-01-01T00:00:00Z',
      '+010000-01-01T00:00:00.000Z',
      '2016-12-31T23:59:60Z',
      '2021-02-29T00:00:00Z',
      '2024-02-29T12:00:00Z',
    ),
    edgeString,
    fc.constantFrom(0, -1, 1e308, null, true, [], {}),
  );
  const hugeNumber = fc.constantFrom(
    1e308,
    -1e308,
    Number.MAX_VALUE,
    Number.MIN_VALUE,
    5e-324,
    2 ** 53 + 1,
    -(2 ** 63),
    0.1 + 0.2,
    -0,
  );
  const nested = (depth: number) => {
    let value: unknown = 'deep';
    for (let i = 0; i < depth; i++) value = i % 2 === 0 ? [value] : { k: value };
    return value;
  };
  const payload = fc.oneof(
    {
      arbitrary: fc.dictionary(edgeString, fc.oneof(edgeString, hugeNumber, fc.jsonValue({ maxDepth: 3 })), {
        maxKeys: 5,
      }),
      weight: 8,
    },
    { arbitrary: fc.constantFrom(95, 98, 99, 100, 101, 150).map((depth) => ({ n: nested(depth) })), weight: 2 },
    {
      arbitrary: fc.constantFrom(200, 255, 256, 257, 300).map((kib) => ({ big: 'x'.repeat(kib * 1024 - 10) })),
      weight: 1,
    },
    { arbitrary: fc.constantFrom(null, [], 'text', 1), weight: 1 },
  );
  // Mostly valid types, so that the other fields' edge values reach a flush.
  const type = fc.oneof(
    { arbitrary: fc.constantFrom('edge.type', 'a', 'A.b_c:d-e'), weight: 6 },
    { arbitrary: edgeString, weight: 1 },
    { arbitrary: fc.integer({ min: 120, max: 200 }).map((n) => 't'.repeat(n)), weight: 1 },
  );
  const dedupId = fc.oneof(
    edgeString,
    fc.constantFrom(undefined, null, 1, ''),
    fc.integer({ min: 250, max: 260 }).map((n) => 'k'.repeat(n)),
    fc.integer({ min: 120, max: 130 }).map((n) => '😀'.repeat(n)),
  );
  const event = fc.record(
    { type, payload, occurred_at: timestamp, dedup_id: dedupId },
    { requiredKeys: ['type', 'payload'] },
  );
  // Raw JSON a client can send that JSON.stringify never writes: numbers out of double range,
  // escapes of NUL and lone surrogates, paired surrogate escapes, overlong nesting.
  const rawPayload = fc.constantFrom(
    '{"n":1e400}',
    '{"n":-1e400}',
    '{"n":1e-400}',
    '{"s":"\\u0000"}',
    '{"s":"\\ud800"}',
    '{"s":"\\udc00\\ud800"}',
    '{"s":"\\ud83d\\ude00"}',
    '{"\\u0000":1}',
    '{"n":123456789012345678901234567890}',
    '{"a":' + '['.repeat(120) + ']'.repeat(120) + '}',
  );

  test('text COPY, binary COPY, dedup statement: the victim sees only 2xx and every 202 stored once; the attacker only 202/200/4xx', async () => {
    const { base, db, attacker, victim } = setup;
    const victimIds: string[] = [];
    let attackerAccepted = 0;
    let runs = 0;
    const started = performance.now();
    const seen = new Map<number, number>();
    const paths = new Map<string, number>();
    const { flushes } = await watchFlushes(() =>
      fc.assert(
        fc.asyncProperty(
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
              return typeof e.dedup_id === 'string' && e.dedup_id !== ''
                ? { ...e, dedup_id: `${salt}-${e.dedup_id}` }
                : e;
            };
            const victimSends: Array<Promise<ApiResponse>> = [
              sendEvent(base, victim.key, { type: 'victim.single', payload: { salt } }),
              sendEvent(base, victim.key, {
                type: 'victim.single',
                payload: { salt },
                ...(dedup ? { dedup_id: `vs-${salt}` } : {}),
              }),
            ];
            if (path !== 'text COPY') {
              const victimBatch = Array.from({ length: 66 }, (_, i) => ({
                type: 'victim.batch',
                payload: { i, salt },
                ...(dedup && i === 0 ? { dedup_id: `v-${salt}` } : {}),
              }));
              victimSends.push(
                call(base, 'POST', '/v1/events/batch', { key: victim.key, body: { events: victimBatch } }),
              );
            }
            const attackerSends = [
              ...singles.map((e) => sendEvent(base, attacker.key, shaped(e))),
              batch.length > 0
                ? call(base, 'POST', '/v1/events/batch', { key: attacker.key, body: { events: batch.map(shaped) } })
                : null,
              raw
                ? call(base, 'POST', '/v1/events', {
                    key: attacker.key,
                    raw: `{"type":"raw","payload":${raw}}`,
                    headers: { 'content-type': 'application/json' },
                  })
                : null,
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
              assert.ok(
                answer.status === 202 || answer.status === 200 || (answer.status >= 400 && answer.status < 500),
                `attacker got ${answer.status} ${answer.text}`,
              );
              if (answer.status === 202) attackerAccepted++;
              if (answer.body?.results) {
                for (const result of answer.body.results) {
                  assert.ok(
                    result.status !== 'rejected' || result.error.code !== 'unavailable',
                    `attacker batch item: ${JSON.stringify(result)}`,
                  );
                  if (result.status === 'accepted') attackerAccepted++;
                }
              }
            }
          },
        ),
        {
          numRuns: Number(process.env.ISOLATION_RUNS ?? 150),
          seed: process.env.ISOLATION_SEED ? Number(process.env.ISOLATION_SEED) : undefined,
        },
      ),
    );
    // Flushes of 64 rows or more without a dedup_id went as binary COPY: the victim's batches of 66 made many.
    assert.ok(flushes.filter((flush) => flush.rows >= 64).length > 10, `few large flushes: ${flushes.length} flushes`);
    assert.ok(
      flushes.every((flush) => flush.ok),
      'a flush failed as a whole',
    );
    const stored = await storedIds(db, victimIds);
    assert.deepEqual(
      victimIds.filter((id) => !stored.has(id)),
      [],
      'a victim 202 is not stored',
    );
    assert.equal(
      await countOf(db, victim.orgId, ['victim.single', 'victim.batch']),
      victimIds.length,
      'victim events stored twice',
    );
    const [row] = await db`select count(*)::int as n from events where org_id = ${attacker.orgId}`;
    assert.equal(row!.n, attackerAccepted, "the attacker's stored events are not exactly its accepted ones");
    // Nothing stored outside what the contract allows (a binary COPY once stored years 0 and 10000).
    const [outside] = await db`
      select count(*)::int as n from events
      where org_id = ${attacker.orgId} and (occurred_at < '0001-01-01T00:00:00Z' or occurred_at >= '9999-12-31T23:59:59.999Z'::timestamptz + interval '1 millisecond')`;
    assert.equal(outside!.n, 0, 'an occurred_at outside years 0001-9999 was stored');
    // What was stored reads back: the inbox of the attacker's org answers.
    const inbox = await call(base, 'GET', '/v1/inbox?limit=1000', { key: attacker.key });
    assert.equal(inbox.status, 200, inbox.text);
    console.log(
      `# ${runs} runs (${JSON.stringify(Object.fromEntries(paths))}), ${flushes.length} flushes, in ${Math.round(performance.now() - started)} ms; attacker statuses ${JSON.stringify(Object.fromEntries(seen))}, ${attackerAccepted} accepted`,
    );
  });
});

describe('flushes are split by size', () => {
  let setup: Setup;
  before(async () => {
    setup = await startSetup(pg, 'isolation_bytes', {});
  });

  test('256 KiB payloads, with and without dedup_id: no flush over FLUSH_MAX_CHARACTERS, every answer right, each event stored once', async () => {
    const { base, db, attacker } = setup;
    const big = 'x'.repeat(256 * 1024 - 64);
    const perFlush = Math.floor(FLUSH_MAX_CHARACTERS / (big.length + 20));
    const count = 160;
    const { result: answers, flushes } = await watchFlushes(() =>
      Promise.all(
        Array.from({ length: count }, (_, i) => {
          // Even: plain (COPY); odd: a dedup_id, each sent twice (the second is a duplicate of the first).
          const dedup = i % 2 === 1 ? { dedup_id: `big-${i >> 2}` } : {};
          return sendEvent(base, attacker.key, { type: 'big', payload: { i, big }, ...dedup });
        }),
      ),
    );
    const busiest = Math.max(...flushes.map((flush) => flush.rows));
    const seconds = Math.max(...flushes.map((flush) => flush.seconds));
    console.log(`# ${JSON.stringify(flushes.map((f) => [f.rows, Math.round(f.seconds * 1000)]))}`);
    console.log(
      `# ${flushes.length} flushes, at most ${busiest} rows (${perFlush} fit in ${FLUSH_MAX_CHARACTERS} characters); slowest ${Math.round(seconds * 1000)} ms`,
    );
    assert.ok(busiest <= perFlush, `a flush of ${busiest} payloads of 256 KiB: over the budget of ${perFlush}`);
    assert.ok(
      flushes.some((flush) => flush.rows > 1),
      'large events are still batched',
    );
    assert.ok(
      flushes.every((flush) => flush.ok),
      JSON.stringify(flushes.filter((flush) => !flush.ok)),
    );
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
    const [row] =
      await db`select count(*)::int as n, count(distinct id)::int as ids, min(length(payload::text))::int as shortest from events where org_id = ${attacker.orgId} and type = 'big'`;
    assert.deepEqual(row, { n: (count * 3) / 4, ids: (count * 3) / 4, shortest: JSON.stringify({ i: 0, big }).length });
  });
});
