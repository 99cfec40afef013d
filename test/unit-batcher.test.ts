import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CopyWriter } from '../src/db/client-copy.js';
import type { Sql } from '../src/db/connect.js';
import { ApiError } from '../src/errors.js';
import { EventBatcher, FLUSH_MAX_CHARACTERS, type BatcherOptions, type EventResult } from '../src/ingest/batcher.js';
import type { ValidEvent } from '../src/ingest/validate.js';

/**
 * The ingest group commit (src/ingest/batcher.ts) over a fake COPY writer: each flush is a call
 * the test answers (commit, fail, refuse a value), so what is answered when, and what the
 * delivery wake-up callback hears, is checked without a database. Events without dedup_id only:
 * the dedup statement is SQL and is tested against Postgres (dedup-flush.test).
 */

interface Flush {
  data: string;
  commit(): void;
  fail(error: unknown): void;
}

/** A COPY writer whose flushes wait for the test (or are answered at once by `auto`). */
class FakeCopy implements CopyWriter {
  readonly flushes: Flush[] = [];
  auto: ((data: string) => unknown) | null = null;
  copy(): Promise<unknown> {
    throw new Error('the batcher writes fenced COPYs only');
  }
  copyFenced(_fence: string, _statement: string, data: string | Buffer): Promise<unknown> {
    const text = typeof data === 'string' ? data : data.toString('latin1');
    return new Promise((resolve, reject) => {
      this.flushes.push({ data: text, commit: () => resolve(undefined), fail: reject });
      if (this.auto) {
        const error = this.auto(text);
        if (error) reject(error);
        else resolve(undefined);
      }
    });
  }
  close(): void {}
}

const noSql = (() => {
  throw new Error('no SQL without dedup_id');
}) as unknown as Sql;

function options(overrides: Partial<BatcherOptions> = {}): BatcherOptions {
  return {
    maxBatchRows: 5_000,
    flushConcurrency: 2,
    maxQueuedEvents: 10_000,
    flushTimeoutMs: 10_000,
    dedupWindowHours: 24,
    ...overrides,
  };
}

function event(payload = '{"n":1}'): ValidEvent {
  return {
    type: 'unit.test',
    payloadJson: payload,
    dedupId: null,
    occurredAt: null,
    orderingKey: null,
    schemaVersion: null,
  };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));
/** Turns of the event loop until `condition` holds (a few suffice; 100 means it never will). */
async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !condition(); i++) await turn();
  assert.ok(condition(), 'never happened');
}
const rowsOf = (flush: Flush) => flush.data.split('\n').filter(Boolean).length;
const statuses = (results: EventResult[]) => results.map((r) => (r instanceof ApiError ? r.status : r.status));

test('requests of one turn share a flush; each is answered after the commit, and the wake-up hears their orgs then', async () => {
  const copy = new FakeCopy();
  const heard: string[][] = [];
  const batcher = new EventBatcher(noSql, copy, options(), (orgs) => heard.push([...orgs].sort()));
  let answered = 0;
  const a = batcher.enqueue('org-a', [event(), event()], Date.now()).then((r) => {
    answered++;
    return r;
  });
  const b = batcher.enqueue('org-b', [event()], Date.now()).then((r) => {
    answered++;
    return r;
  });
  await turn();
  assert.equal(copy.flushes.length, 1);
  assert.equal(rowsOf(copy.flushes[0]!), 3);
  await turn();
  assert.equal(answered, 0, 'nothing answered before the commit');
  assert.deepEqual(heard, [], 'no wake-up before the commit');
  copy.flushes[0]!.commit();
  const [resultsA, resultsB] = await Promise.all([a, b]);
  assert.deepEqual(statuses(resultsA), ['accepted', 'accepted']);
  assert.deepEqual(statuses(resultsB), ['accepted']);
  const ids = [...resultsA, ...resultsB].map((r) => (r as { id: string }).id);
  assert.equal(new Set(ids).size, 3);
  assert.deepEqual(heard, [['org-a', 'org-b']]);
  await batcher.drained();
});

test('a failed flush answers 503 (storage) for exactly its events, wakes nobody, and the next flush is unaffected', async () => {
  const copy = new FakeCopy();
  const heard: string[] = [];
  const batcher = new EventBatcher(noSql, copy, options({ flushConcurrency: 1 }), (orgs) => heard.push(...orgs));
  const first = batcher.enqueue('org-a', [event()], Date.now());
  await turn();
  const second = batcher.enqueue('org-b', [event()], Date.now());
  await turn();
  assert.equal(copy.flushes.length, 1, 'one flush at a time');
  copy.flushes[0]!.fail(Object.assign(new Error('connection reset'), { code: 'ECONNRESET' }));
  const [refused] = await first;
  assert.ok(refused instanceof ApiError);
  assert.equal(refused.status, 503);
  assert.equal(refused.unavailableCause, 'storage');
  assert.ok(refused.headers?.['Retry-After']);
  await until(() => copy.flushes.length === 2);
  copy.flushes[1]!.commit();
  assert.deepEqual(statuses(await second), ['accepted']);
  assert.deepEqual(heard, ['org-b']);
});

test('a full queue refuses at once with 503 overloaded, and queues nothing of that request', async () => {
  const copy = new FakeCopy();
  const batcher = new EventBatcher(noSql, copy, options({ maxQueuedEvents: 3, flushConcurrency: 1 }));
  const held = batcher.enqueue('org-a', [event()], Date.now());
  await turn(); // in flight: no longer queued
  const queued = batcher.enqueue('org-a', [event(), event()], Date.now());
  assert.throws(
    () => batcher.enqueue('org-b', [event(), event()], Date.now()),
    (error: ApiError) => error.status === 503 && error.unavailableCause === 'overloaded',
  );
  assert.equal(batcher.queued, 2);
  copy.flushes[0]!.commit();
  await held;
  await until(() => copy.flushes.length === 2);
  copy.flushes[1]!.commit();
  assert.deepEqual(statuses(await queued), ['accepted', 'accepted']);
});

test('a flush takes at most MAX_BATCH_ROWS events, and at most FLUSH_CONCURRENCY flushes run at once', async () => {
  const copy = new FakeCopy();
  const batcher = new EventBatcher(noSql, copy, options({ maxBatchRows: 10, flushConcurrency: 2 }));
  // Seven requests of 5 events: a flush takes whole requests.
  const pending = Promise.all(
    Array.from({ length: 7 }, () =>
      batcher.enqueue(
        'org-a',
        Array.from({ length: 5 }, () => event()),
        Date.now(),
      ),
    ),
  ).then((answers) => answers.flat());
  for (let i = 0; i < 5; i++) await turn();
  assert.deepEqual(copy.flushes.map(rowsOf), [10, 10]);
  copy.flushes[0]!.commit();
  for (let i = 0; i < 5; i++) await turn();
  assert.deepEqual(copy.flushes.map(rowsOf), [10, 10, 10]);
  copy.flushes[1]!.commit();
  copy.flushes[2]!.commit();
  for (let i = 0; i < 5; i++) await turn();
  assert.deepEqual(copy.flushes.map(rowsOf), [10, 10, 10, 5]);
  copy.flushes[3]!.commit();
  assert.equal((await pending).length, 35);
});

test('large payloads are split across flushes by FLUSH_MAX_CHARACTERS (one at least per flush)', async () => {
  const copy = new FakeCopy();
  copy.auto = () => null;
  const batcher = new EventBatcher(noSql, copy, options({ flushConcurrency: 1 }));
  const big = event(`"${'x'.repeat(FLUSH_MAX_CHARACTERS / 2)}"`);
  const results = await Promise.all([
    batcher.enqueue('org-a', [big], Date.now()),
    batcher.enqueue('org-b', [big], Date.now()),
    batcher.enqueue('org-a', [big, event()], Date.now()),
  ]);
  assert.deepEqual(
    results.flat().map((result) => (result as { status: string }).status),
    ['accepted', 'accepted', 'accepted', 'accepted'],
  );
  assert.deepEqual(copy.flushes.map(rowsOf), [1, 1, 2]);
});

test('a flush never takes part of a request: a request past a limit goes whole, the next waits for the next flush', async () => {
  const copy = new FakeCopy();
  const batcher = new EventBatcher(noSql, copy, options({ maxBatchRows: 10, flushConcurrency: 2 }));
  const marked = (request: string, count: number) =>
    Array.from({ length: count }, (_, i) => event(`{"request":"${request}","i":${i}}`));
  const answers = Promise.all([
    batcher.enqueue('org-a', marked('a', 4), Date.now()),
    batcher.enqueue('org-a', marked('b', 8), Date.now()), // would straddle the 10-row limit
    batcher.enqueue('org-a', marked('c', 15), Date.now()), // past the limit on its own
    batcher.enqueue('org-a', marked('d', 3), Date.now()),
  ]);
  const requestsOf = (flush: Flush) => [...new Set(flush.data.match(/request":"(\w)/g)!.map((m) => m.at(-1)))];
  await until(() => copy.flushes.length === 2);
  assert.deepEqual(copy.flushes.map(rowsOf), [4, 8]);
  copy.flushes[0]!.commit();
  copy.flushes[1]!.commit();
  await until(() => copy.flushes.length === 4);
  assert.deepEqual(copy.flushes.map(rowsOf), [4, 8, 15, 3]);
  assert.deepEqual(copy.flushes.map(requestsOf), [['a'], ['b'], ['c'], ['d']]);
  for (const flush of copy.flushes.slice(2)) flush.commit();
  assert.deepEqual(
    (await answers).map((results) => results.length),
    [4, 8, 15, 3],
  );
  // Within a flush, rows keep the request's order (the COPY draws seqs in row order).
  const c = copy.flushes[2]!.data.match(/"i":(\d+)/g)!.map((m) => Number(m.slice(4)));
  assert.deepEqual(
    c,
    Array.from({ length: 15 }, (_, i) => i),
  );
});

test('a value Postgres refuses fails only its own event (422); its neighbours, of its org and others, are stored', async () => {
  const copy = new FakeCopy();
  copy.auto = (data) =>
    data.includes('BAD')
      ? Object.assign(new Error('new row violates check constraint "no_bad"'), {
          code: '23514',
          constraint_name: 'no_bad',
        })
      : null;
  const heard: string[] = [];
  const batcher = new EventBatcher(noSql, copy, options(), (orgs) => heard.push(...orgs));
  const [a, b] = await Promise.all([
    batcher.enqueue('org-a', [event(), event('{"v":"BAD"}'), event()], Date.now()),
    batcher.enqueue('org-b', [event()], Date.now()),
  ]);
  assert.deepEqual(statuses(a), ['accepted', 422, 'accepted']);
  assert.equal((a[1] as ApiError).code, 'validation_failed');
  assert.deepEqual(statuses(b), ['accepted']);
  assert.deepEqual([...new Set(heard)].sort(), ['org-a', 'org-b']);
});

test('a flush that outlives FLUSH_TIMEOUT_MS answers 503 flush_timeout; a commit that comes later answers nothing twice', async () => {
  const copy = new FakeCopy();
  const batcher = new EventBatcher(noSql, copy, options({ flushTimeoutMs: 50 }));
  const [refused] = await batcher.enqueue('org-a', [event()], Date.now());
  assert.ok(refused instanceof ApiError);
  assert.equal(refused.unavailableCause, 'flush_timeout');
  copy.flushes[0]!.commit();
  await turn();
  assert.equal(refused.status, 503);
  await batcher.drained();
});
