import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Sql } from '../src/db/connect.js';
import { uuidv7 } from '../src/ids.js';
import { call, createOrgWithKey, sendEvent } from './helpers/api.js';
import { InProcessServer } from './helpers/in-process.js';
import { insertEventRow, takeFlushFence, TestPostgres } from './helpers/postgres.js';

/**
 * The watermark (src/ingest/sequence.ts, sql/008_flush_fences.sql), step by step: a flush held
 * open between its fence and its commit, as the server's own flushes are for a few milliseconds.
 * The 8-producer load test (inbox-no-skip.test.ts) shows the same under real concurrency.
 */

let pg: TestPostgres;
let server: InProcessServer;
let base: string;
let db: Sql;

before(async () => {
  pg = await TestPostgres.start();
  const url = await pg.createDatabase('watermark');
  server = await InProcessServer.start({ databaseUrl: url });
  base = server.url;
  db = pg.connect('watermark');
});

after(async () => {
  await db?.end({ timeout: 1 });
  await server?.stop();
  await pg?.stop();
});

async function inboxIds(key: string): Promise<string[]> {
  const page = await call(base, 'GET', '/v1/inbox?limit=1000', { key });
  assert.equal(page.status, 200, page.text);
  return page.body.events.map((event: { id: string }) => event.id);
}

/**
 * A flush of `orgId` that has taken its fence and written one row, and waits for `finish`;
 * `running` resolves once the row is written, with the backend's pid; `outcome` with null after
 * the commit, or with the error that ended the transaction.
 */
function heldFlush(orgId: string, id: string) {
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => {
    finish = resolve;
  });
  let started!: (pid: number) => void;
  const running = new Promise<number>((resolve) => {
    started = resolve;
  });
  const done = db.begin(async (tx) => {
    await takeFlushFence(tx);
    await insertEventRow(tx, { orgId, id, type: 'held.flush', receivedAt: new Date() });
    const [row] = await tx`select pg_backend_pid() as pid`;
    started(row!.pid as number);
    await finished;
  });
  const outcome = done.then(
    () => null,
    (error: Error) => error,
  );
  return { running, finish, outcome };
}

test('a flush still writing holds readers below its fence; at its commit its row and every later one appear, in seq order', async () => {
  const org = await createOrgWithKey(base, { name: 'held' });
  const before = await sendEvent(base, org.key, { type: 'before.flush', payload: {} });
  assert.equal(before.status, 202);
  const heldId = uuidv7(Date.now());
  const flush = heldFlush(org.orgId, heldId);
  await flush.running;
  // Accepted (committed) after the held row drew its seq: above the fence, so not handed out yet,
  // in the inbox or anywhere: a cursor past it would skip the held row.
  const later = await sendEvent(base, org.key, { type: 'after.flush', payload: {} });
  assert.equal(later.status, 202);
  assert.deepEqual(await inboxIds(org.key), [before.body.id]);
  // GET by id does not page by cursor: the event is there.
  assert.equal((await call(base, 'GET', `/v1/events/${later.body.id}`, { key: org.key })).status, 200);

  flush.finish();
  assert.equal(await flush.outcome, null);
  assert.deepEqual(await inboxIds(org.key), [before.body.id, heldId, later.body.id]);
});

test('a flush that dies releases its fence with its session: readers move on at once, and its row never appears', async () => {
  const org = await createOrgWithKey(base, { name: 'dies' });
  const heldId = uuidv7(Date.now());
  const flush = heldFlush(org.orgId, heldId);
  const pid = await flush.running;
  const later = await sendEvent(base, org.key, { type: 'after.death', payload: {} });
  assert.equal(later.status, 202);
  assert.deepEqual(await inboxIds(org.key), []);

  const admin = pg.connect('watermark');
  try {
    const [killed] = await admin`select pg_terminate_backend(${pid}) as done`;
    assert.equal(killed!.done, true);
  } finally {
    await admin.end({ timeout: 1 });
  }
  assert.ok(await flush.outcome, 'the terminated flush failed');
  // No expiry to wait for: the lock ended with the backend.
  assert.deepEqual(await inboxIds(org.key), [later.body.id]);
  const [stored] = await db`select count(*)::int as n from events where id = ${heldId}`;
  assert.equal(stored!.n, 0);
});

test('a transaction that is not a flush does not hold readers back, however long it stays open', async () => {
  const org = await createOrgWithKey(base, { name: 'other work' });
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => {
    finish = resolve;
  });
  let opened!: () => void;
  const open = new Promise<void>((resolve) => {
    opened = resolve;
  });
  // A write of another kind, holding an xid (the old xid watermark waited for such transactions).
  const other = db.begin(async (tx) => {
    await tx`select pg_current_xact_id()`;
    opened();
    await finished;
  });
  await open;
  try {
    const sent = await sendEvent(base, org.key, { type: 'during.other', payload: {} });
    assert.equal(sent.status, 202);
    assert.deepEqual(await inboxIds(org.key), [sent.body.id]);
  } finally {
    finish();
    await other;
  }
});
