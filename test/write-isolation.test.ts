import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { normaliseTimestamp } from '../src/ingest/validate.js';
import { call, sendEvent, type ApiResponse } from './helpers/api.js';
import {
  countOf,
  inOneFlush,
  OUT_OF_RANGE,
  startSetup,
  stopSetups,
  storedIds,
  watchFlushes,
  type Setup,
} from './helpers/isolation.js';
import { TestPostgres } from './helpers/postgres.js';

/**
 * Issue 23: nothing one org sends can fail another org's request (API.md §3). Found from outside:
 * an org posting occurred_at "0000-01-01T00:00:00Z" got 503 (not 422), and so did a fifth of
 * another org's requests: Postgres refused the value and the whole flush failed. Here: values at
 * every column's edges are 422 for that event alone, and a row that Postgres refuses for a reason
 * validation cannot foresee is found by splitting the flush, so only it is refused and its
 * neighbours (other orgs, the same flush) get 202 and are stored. Through the text COPY, the
 * binary COPY (flushes of 64 rows or more), the dedup statement, and both COPY clients. The
 * property-based test across orgs and the flush size are in write-isolation-property.test.ts.
 */

let pg: TestPostgres;

before(async () => {
  pg = await TestPostgres.start();
});

after(async () => {
  await stopSetups();
  await pg?.stop();
});

function expectRefusedAlone(response: ApiResponse, what: string) {
  assert.equal(response.status, 422, `${what}: ${response.status} ${response.text}`);
  assert.equal(response.body.error.code, 'validation_failed', what);
}

test('occurred_at: years 0001-9999 once in UTC, real calendar days, up to 9 fraction digits', () => {
  const cases: Array<[string, string | null]> = [
    ['0000-01-01T00:00:00Z', null],
    ['0001-01-01T00:30:00+01:00', null],
    ['9999-12-31T23:30:00-01:00', null],
    ['0000-12-31T23:30:00-01:00', '0001-01-01T00:30:00.000Z'],
    ['0001-01-01T00:00:00Z', '0001-01-01T00:00:00.000Z'],
    ['9999-12-31T23:59:59.999999999Z', '9999-12-31T23:59:59.999Z'],
    ['9999-12-31T23:59:59.999+00:00', '9999-12-31T23:59:59.999Z'],
    ['10000-01-01T00:00:00Z', null],
    ['2021-02-29T00:00:00Z', null],
    ['2024-02-29T00:00:00Z', '2024-02-29T00:00:00.000Z'],
    ['2000-02-29T00:00:00Z', '2000-02-29T00:00:00.000Z'],
    ['1900-02-29T00:00:00Z', null],
    ['2021-02-30T00:00:00Z', null],
    ['2021-04-31T00:00:00Z', null],
    ['2021-12-31T10:00:00.123456789+02:00', '2021-12-31T08:00:00.123Z'],
    ['2016-12-31T23:59:60Z', null],
    ['2021-01-01T00:00:00', null],
    ['2021-01-01T00:00:00+24:00', null],
  ];
  for (const [input, expected] of cases) assert.equal(normaliseTimestamp(input), expected, input);
});

for (const copyClient of ['wire', 'postgres']) {
  describe(`INGEST_COPY_CLIENT=${copyClient}`, () => {
    let setup: Setup;
    before(async () => {
      setup = await startSetup(pg, `isolation_${copyClient}`, { INGEST_COPY_CLIENT: copyClient });
    });

    test("occurred_at outside years 0001-9999 in UTC: 422 for that event alone, the other org's events all 202 and stored", async () => {
      const { base, db, attacker, victim } = setup;
      const { result: answers, flushes } = await watchFlushes(() =>
        inOneFlush(setup, () =>
          Promise.all([
            ...OUT_OF_RANGE.flatMap((occurredAt, i) => [
              sendEvent(base, attacker.key, { type: 'bad.time', payload: { i }, occurred_at: occurredAt }),
              sendEvent(base, attacker.key, {
                type: 'bad.time',
                payload: { i },
                occurred_at: occurredAt,
                dedup_id: `bad-${i}`,
              }),
            ]),
            call(base, 'POST', '/v1/events/batch', {
              key: attacker.key,
              body: {
                events: [
                  ...OUT_OF_RANGE.map((occurredAt) => ({ type: 'bad.time', payload: {}, occurred_at: occurredAt })),
                  { type: 'good.time', payload: {}, occurred_at: '0001-01-01T00:30:00+00:30' },
                  { type: 'good.time', payload: {}, occurred_at: '0000-12-31T23:30:00-01:00' },
                ],
              },
            }),
            ...Array.from({ length: 8 }, (_, i) =>
              sendEvent(base, victim.key, { type: 'victim.single', payload: { i } }),
            ),
            sendEvent(base, victim.key, { type: 'victim.single', payload: {}, dedup_id: 'victim-time-1' }),
            call(base, 'POST', '/v1/events/batch', {
              key: victim.key,
              body: { events: Array.from({ length: 70 }, (_, i) => ({ type: 'victim.batch', payload: { i } })) },
            }),
          ]),
        ),
      );
      const singles = answers.slice(0, OUT_OF_RANGE.length * 2);
      singles.forEach((answer, i) => {
        expectRefusedAlone(answer, `attacker single ${i}`);
        assert.deepEqual(
          answer.body.error.details.map((d: { field: string }) => d.field),
          ['occurred_at'],
        );
      });
      const attackerBatch = answers[OUT_OF_RANGE.length * 2]!;
      assert.equal(attackerBatch.status, 200, attackerBatch.text);
      assert.deepEqual(
        attackerBatch.body.results.map((r: { status: string }) => r.status),
        ['rejected', 'rejected', 'rejected', 'accepted', 'accepted'],
      );
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
      assert.deepEqual(
        victimIds.filter((id) => !stored.has(id)),
        [],
      );
      assert.equal(await countOf(db, attacker.orgId, ['bad.time']), 0);
      assert.equal(await countOf(db, attacker.orgId, ['good.time']), 2);
      // The victims' 70-event batch went in a flush with the attacker's events: a binary COPY.
      assert.ok(
        flushes.some((flush) => flush.rows >= 70 && flush.ok),
        `flushes: ${JSON.stringify(flushes)}`,
      );
    });

    test('occurred_at out of range in a binary COPY (a batch of 64 or more): 422 for that item, not stored as year 0 or 10000', async () => {
      const { base, db, attacker } = setup;
      const events = Array.from({ length: 70 }, (_, i) => ({
        type: 'binary.time',
        payload: { i },
        ...(i < OUT_OF_RANGE.length ? { occurred_at: OUT_OF_RANGE[i] } : {}),
      }));
      const response = await call(base, 'POST', '/v1/events/batch', { key: attacker.key, body: { events } });
      assert.equal(response.status, 200, response.text);
      assert.equal(response.body.accepted, 70 - OUT_OF_RANGE.length, response.text);
      for (let i = 0; i < OUT_OF_RANGE.length; i++) {
        assert.equal(response.body.results[i].status, 'rejected');
        assert.equal(response.body.results[i].error.details[0].field, 'occurred_at');
      }
      const [row] =
        await db`select count(*)::int as n from events where org_id = ${attacker.orgId} and type = 'binary.time' and occurred_at is not null`;
      assert.equal(row!.n, 0, 'a timestamp outside years 1-9999 was stored');
    });

    test("a received_at that no partition takes (the server's clock: every event alike) stays a 503, not a 422 per event", async () => {
      const { base, db, victim } = setup;
      const day = new Date().toISOString().slice(0, 10);
      const partition = `events_${day.replaceAll('-', '')}`;
      await db.unsafe(`alter table events detach partition ${partition}`);
      let answers: ApiResponse[];
      try {
        answers = await Promise.all([
          sendEvent(base, victim.key, { type: 'no.partition', payload: {} }),
          sendEvent(base, victim.key, { type: 'no.partition', payload: {}, dedup_id: `no-partition-${copyClient}` }),
          call(base, 'POST', '/v1/events/batch', {
            key: victim.key,
            body: { events: Array.from({ length: 70 }, () => ({ type: 'no.partition', payload: {} })) },
          }),
        ]);
      } finally {
        const next = new Date(Date.parse(day) + 86_400_000).toISOString().slice(0, 10);
        await db.unsafe(
          `alter table events attach partition ${partition} for values from ('${day} 00:00+00') to ('${next} 00:00+00')`,
        );
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
          sendEvent(base, victim.key, {
            type: 'sleep.me',
            payload: {},
            ...(dedup ? { dedup_id: `sleep-${tag}` } : {}),
          }),
          sendEvent(base, victim.key, { type: `terminated.${tag}`, payload: {} }),
        ]);
        for (let i = 0; i < 200; i++) {
          const ended =
            await db`select pg_terminate_backend(pid) from pg_stat_activity where application_name like 'triggers-%' and wait_event = 'PgSleep'`;
          if (ended.length > 0) break;
          await new Promise((resolve) => setTimeout(resolve, 25));
        }
        const started = performance.now();
        for (const answer of await pending) {
          assert.equal(answer.status, 503, answer.text);
          assert.equal(answer.body.error.code, 'unavailable');
        }
        assert.ok(
          performance.now() - started < 3000,
          `answered ${Math.round(performance.now() - started)} ms after the termination`,
        );
        assert.equal(await countOf(db, victim.orgId, ['sleep.me', `terminated.${tag}`]), 0);
        const after = await Promise.all([
          sendEvent(base, victim.key, { type: `after.${tag}`, payload: {} }),
          sendEvent(base, victim.key, {
            type: `after.${tag}`,
            payload: {},
            ...(dedup ? { dedup_id: `sleep-${tag}` } : {}),
          }),
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
        const { result: answers, flushes } = await watchFlushes(() =>
          inOneFlush(setup, () =>
            Promise.all([
              sendEvent(base, attacker.key, {
                type: 'refuse.me',
                payload: { tag },
                ...(dedup ? { dedup_id: `refused-${tag}` } : {}),
              }),
              sendEvent(base, attacker.key, { type: `attacker.${tag}`, payload: { fine: true } }),
              ...Array.from({ length: victimCount }, (_, i) =>
                sendEvent(base, victim.key, {
                  type: `victim.${tag}`,
                  payload: { i },
                  ...(dedup && i % 2 === 0 ? { dedup_id: `v-${tag}-${i}` } : {}),
                }),
              ),
            ]),
          ),
        );
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
          const [claim] =
            await db`select count(*)::int as n from event_dedup where org_id = ${attacker.orgId} and dedup_id = ${`refused-${tag}`}`;
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
