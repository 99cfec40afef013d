import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { ClientCopy } from '../src/db/client-copy.js';
import { openDatabase, type Sql } from '../src/db/connect.js';
import { CopyPool } from '../src/db/copy-pool.js';
import { ensurePartitions, migrate } from '../src/db/migrate.js';
import { SendDeadlineExceeded } from '../src/db/send-deadline.js';
import { wireTarget } from '../src/db/wire.js';
import { COPY_EVENTS, EventBatcher, encodeCopyRows } from '../src/ingest/batcher.js';
import { FLUSH_FENCE } from '../src/ingest/sequence.js';
import { holdEventsLock, TestPostgres } from './helpers/postgres.js';
import { ApiError } from '../src/errors.js';
import { uuidv7, isoMs } from '../src/ids.js';

/**
 * Issue 23, item 6: a 503 means nothing was stored. The batcher answers 503 when a flush has not
 * finished within FLUSH_TIMEOUT_MS; before, a flush still waiting for a connection then was sent
 * whenever one freed, and committed: the client, told "not stored", could see its events later
 * (and a retry without dedup_id stored them twice). Now a flush sends its rows before its send
 * deadline or never. Here each pool is stalled (every connection held) past the deadline, the
 * refused events are answered, the stall ends, and they are still not stored.
 */

const FLUSH_TIMEOUT_MS = 1_000;
let pg: TestPostgres;
let url: string;
let db: Sql;
const closers: Array<() => unknown> = [];

before(async () => {
  pg = await TestPostgres.start();
  url = await pg.createDatabase('deadline');
  db = pg.connect('deadline');
  const migrator = openDatabase(url, { max: 1, name: 'deadline-migrate' });
  await migrate(migrator);
  await ensurePartitions(migrator);
  await migrator.end({ timeout: 1 });
});

after(async () => {
  for (const close of closers.reverse()) await close();
  await db?.end({ timeout: 1 });
  await pg?.stop();
});

const ORG = randomUUID();

function row(type: string, dedupId: string | null = null) {
  const now = Date.now();
  return {
    orgId: ORG,
    id: uuidv7(now),
    receivedAt: isoMs(now),
    event: { type, payloadJson: '{}', dedupId, occurredAt: null, orderingKey: null, schemaVersion: null },
  };
}

async function stored(types: string[]): Promise<number> {
  const [found] = await db`select count(*)::int as n from events where type = any(${types}::text[])`;
  return found!.n as number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function batcherOver(sql: Sql, copy: CopyPool | ClientCopy): EventBatcher {
  return new EventBatcher(sql, copy, {
    maxBatchRows: 5000,
    flushConcurrency: 1,
    maxQueuedEvents: 1000,
    flushTimeoutMs: FLUSH_TIMEOUT_MS,
    dedupWindowHours: 24,
  });
}

/** Every answer of `results` is a 503. */
function expectAllUnavailable(results: unknown[], what: string) {
  for (const result of results) {
    assert.ok(result instanceof ApiError, `${what}: ${JSON.stringify(result)}`);
    assert.equal(result.status, 503, `${what}: ${result.message}`);
  }
}

test('COPY pool: a flush that gets no connection before its send deadline is refused, and never stored after the stall', async () => {
  // One connection, held by a COPY that waits on a lock (no statement_timeout on this pool: the
  // holder stalls as long as the test says).
  const pool = new CopyPool(wireTarget(url, { application_name: 'deadline-copy' }), 1);
  closers.push(() => pool.close());
  const lock = await holdEventsLock(db);
  const holder = pool.copyFenced(FLUSH_FENCE, COPY_EVENTS, encodeCopyRows([row('holder')]));
  let answers: unknown[];
  let directOutcome: unknown;
  let answeredMs = 0;
  try {
    const started = performance.now();
    const direct = pool
      .copyFenced(FLUSH_FENCE, COPY_EVENTS, encodeCopyRows([row('refused.direct')]), performance.now() + 200)
      .then(
        () => 'stored',
        (error: unknown) => error,
      );
    const batcher = batcherOver(db, pool);
    answers = await batcher.enqueue(ORG, [row('refused.batcher').event, row('refused.batcher').event], Date.now());
    // Bounded: without a deadline the COPY would wait for the lock's holder, and so would the test.
    directOutcome = await Promise.race([direct, sleep(2 * FLUSH_TIMEOUT_MS).then(() => 'still waiting')]);
    answeredMs = performance.now() - started;
  } finally {
    lock.release();
    await lock.done;
  }
  expectAllUnavailable(answers!, 'batcher');
  await holder;
  await sleep(500);
  assert.equal(await stored(['holder']), 1);
  assert.equal(
    await stored(['refused.direct', 'refused.batcher']),
    0,
    '503 said "not stored", but the events were stored after the stall',
  );
  assert.ok(directOutcome instanceof SendDeadlineExceeded, `the direct COPY: ${String(directOutcome)}`);
  // Refused at the send deadline (0.4 of the flush timeout), not after the whole timeout.
  assert.ok(answeredMs < FLUSH_TIMEOUT_MS, `answered after ${Math.round(answeredMs)} ms`);
  // The pool works afterwards.
  await pool.copyFenced(FLUSH_FENCE, COPY_EVENTS, encodeCopyRows([row('after.stall.copy')]), performance.now() + 1000);
  assert.equal(await stored(['after.stall.copy']), 1);
});

test('the `postgres` pool (dedup statement, INGEST_COPY_CLIENT=postgres): no connection before the send deadline → 503, never stored after the stall', async () => {
  const sql = openDatabase(url, { max: 1, name: 'deadline-sql', statementTimeoutMs: FLUSH_TIMEOUT_MS / 2 });
  closers.push(() => sql.end({ timeout: 1 }));
  const clientCopy = new ClientCopy(sql);
  const batcher = batcherOver(sql, clientCopy);
  // Every connection of the pool held (here: its only one, reserved), as by slow reads.
  const held = await sql.reserve();
  let dedupAnswers: unknown[];
  let copyAnswers: unknown[];
  try {
    const started = performance.now();
    [dedupAnswers, copyAnswers] = await Promise.all([
      batcher.enqueue(ORG, [row('refused.dedup', 'deadline-1').event, row('refused.dedup').event], Date.now()),
      batcherOver(sql, clientCopy).enqueue(ORG, [row('refused.clientcopy').event], Date.now()),
    ]);
    assert.ok(
      performance.now() - started < FLUSH_TIMEOUT_MS + 500,
      `answered after ${Math.round(performance.now() - started)} ms`,
    );
  } finally {
    held.release();
  }
  expectAllUnavailable(dedupAnswers!, 'dedup flush');
  expectAllUnavailable(copyAnswers!, 'client COPY');
  await sleep(500);
  assert.equal(
    await stored(['refused.dedup', 'refused.clientcopy']),
    0,
    '503 said "not stored", but the events were stored after the stall',
  );
  const [claims] = await db`select count(*)::int as n from event_dedup where dedup_id = 'deadline-1'`;
  assert.equal(claims!.n, 0, 'a refused dedup flush left its claim');
  // The pool and the dedup id work afterwards: stored once, as new.
  const [retried] = await batcher.enqueue(ORG, [row('after.stall.dedup', 'deadline-1').event], Date.now());
  assert.ok(!(retried instanceof ApiError), String(retried));
  assert.equal(retried.status, 'accepted');
  const [copied] = await batcherOver(sql, clientCopy).enqueue(ORG, [row('after.stall.clientcopy').event], Date.now());
  assert.ok(!(copied instanceof ApiError), String(copied));
  assert.equal(await stored(['after.stall.dedup', 'after.stall.clientcopy']), 2);
});
