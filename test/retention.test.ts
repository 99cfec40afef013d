import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Queryable, Sql } from '../src/db/connect.js';
import { uuidv7 } from '../src/ids.js';
import { removeExpiredDeliveries, RETENTION_LOCK, runRetention } from '../src/ops/retention.js';
import { call, createOrgWithKey, sendEvent } from './helpers/api.js';
import { insertEventRow, TestPostgres } from './helpers/postgres.js';
import { TestServer } from './helpers/server.js';

const DAY_MS = 86_400_000;
const DATABASE = `retention_${process.pid}`;

let pg: TestPostgres;
let server: TestServer;
let sql: Sql;

before(async () => {
  pg = await TestPostgres.start();
  const url = await pg.createDatabase(DATABASE);
  // RETENTION_DAYS=2 and DEDUP_WINDOW_HOURS=1 (the smallest sensible windows), job every 300 ms.
  server = await TestServer.start({
    databaseUrl: url,
    workers: 1,
    env: { RETENTION_DAYS: '2', DEDUP_WINDOW_HOURS: '1', RETENTION_INTERVAL_MS: '300' },
  });
  sql = pg.connect(DATABASE);
});

after(async () => {
  await sql?.end({ timeout: 1 });
  await server?.stop();
  await pg?.stop();
});

function day(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

function partitionName(ms: number): string {
  return 'events_' + day(ms).replace(/-/g, '');
}

async function partitionExists(name: string): Promise<boolean> {
  const [row] = await sql`select to_regclass(${name}) is not null as present`;
  return row!.present;
}

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${server.output.slice(-2000)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** An event stored straight into a past day's partition, as if it had been ingested then. */
async function insertOldEvent(tx: Queryable, orgId: string, receivedAtMs: number): Promise<string> {
  const id = uuidv7(receivedAtMs);
  await insertEventRow(tx, { orgId, id, type: 'old.event', receivedAt: new Date(receivedAtMs) });
  return id;
}

test('the retention job drops expired day partitions, keeps recent events, creates partitions ahead, and expires dedup ids', {
  timeout: 120_000,
}, async () => {
  const base = server.url;
  const { orgId, key } = await createOrgWithKey(base);
  const now = Date.now();

  // A recent event through the API, and a dedup id that is still inside its window.
  const recent = await sendEvent(base, key, { type: 'recent.event', payload: {}, dedup_id: 'fresh-key' });
  assert.equal(recent.status, 202, recent.text);

  // Two old days: 10 days ago (expired) and 3 days ago (expired: its whole day ended more
  // than 2 days ago). Yesterday's events are inside the window and must stay.
  // One transaction, so the job (every 300 ms) cannot drop a partition before its rows are in.
  const oldDays = [now - 10 * DAY_MS, now - 3 * DAY_MS];
  const oldIds: string[] = [];
  let yesterday = '';
  await sql.begin(async (tx) => {
    await tx`select ensure_event_partitions(${day(oldDays[0]!)}::date, ${day(oldDays[1]!)}::date)`;
    for (const ms of oldDays) oldIds.push(await insertOldEvent(tx, orgId, ms));
    yesterday = await insertOldEvent(tx, orgId, now - DAY_MS);
    // An expired dedup claim (3 h old, window 1 h) next to the fresh one.
    await tx`
      insert into event_dedup (org_id, dedup_id, event_id, received_at)
      values (${orgId}, 'expired-key', ${oldIds[1]!}, now() - interval '3 hours')`;
    const [count] = await tx`select count(*)::int as n from events where org_id = ${orgId}`;
    assert.equal(count!.n, 4);
  });
  assert.equal((await call(base, 'GET', `/v1/events/${yesterday}`, { key })).status, 200);

  // A partition ahead that has gone missing is created again by the job.
  const ahead = partitionName(now + 6 * DAY_MS);
  await sql`drop table ${sql(ahead)}`;

  for (const ms of oldDays)
    await waitFor(async () => !(await partitionExists(partitionName(ms))), `${partitionName(ms)} to be dropped`);
  await waitFor(() => partitionExists(ahead), `${ahead} to be created again`);
  await waitFor(
    async () => (await sql`select 1 from event_dedup where dedup_id = 'expired-key'`).length === 0,
    'the expired dedup id to be deleted',
  );

  // The dropped days' events are gone; recent ones (yesterday, today) are kept.
  for (const id of oldIds) assert.equal((await call(base, 'GET', `/v1/events/${id}`, { key })).status, 404);
  assert.equal((await call(base, 'GET', `/v1/events/${yesterday}`, { key })).status, 200);
  assert.equal((await call(base, 'GET', `/v1/events/${recent.body.id}`, { key })).status, 200);
  assert.ok(await partitionExists(partitionName(now - DAY_MS)));
  assert.ok(await partitionExists(partitionName(now)));
  const inbox = await call(base, 'GET', '/v1/inbox', { key });
  assert.deepEqual(inbox.body.events.map((e: any) => e.id).sort(), [yesterday, recent.body.id].sort());
  // Dropped whole, not row by row: no partition for those days exists any more, attached or not.
  const leftovers = await sql`select relname from pg_class where relname = any(${oldDays.map(partitionName)})`;
  assert.equal(leftovers.length, 0);

  // The expired dedup id is accepted again as a new event; the fresh one is still a duplicate.
  const reused = await sendEvent(base, key, { type: 'x', payload: {}, dedup_id: 'expired-key' });
  assert.equal(reused.status, 202, reused.text);
  assert.notEqual(reused.body.id, oldIds[1]);
  const duplicate = await sendEvent(base, key, { type: 'x', payload: {}, dedup_id: 'fresh-key' });
  assert.equal(duplicate.status, 200, duplicate.text);
  assert.equal(duplicate.body.id, recent.body.id);

  // Ingestion kept working while the job ran on its short interval.
  for (let i = 0; i < 20; i++)
    assert.equal((await sendEvent(base, key, { type: 'during', payload: { i } })).status, 202);
  assert.doesNotMatch(server.output, /retention job failed/);
});

test('nodes take turns: a run skips while another holds the retention lock', { timeout: 60_000 }, async () => {
  const options = { retentionDays: 2, dedupWindowHours: 1 };
  const otherNode = await sql.reserve();
  try {
    await otherNode`select pg_advisory_lock(${RETENTION_LOCK})`;
    const skipped = await runRetention(sql, options);
    assert.deepEqual(skipped, { ran: false, partitionsCreated: 0, partitionsDropped: [], dedupRowsDeleted: 0 });
  } finally {
    await otherNode`select pg_advisory_unlock(${RETENTION_LOCK})`;
    otherNode.release();
  }
  // Free again: a run goes through (retrying while the server's own 300 ms job holds the lock).
  const deadline = Date.now() + 30_000;
  let report = await runRetention(sql, options);
  while (!report.ran && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    report = await runRetention(sql, options);
  }
  assert.equal(report.ran, true);
});

test('delivery rows of events older than the retention are deleted; newer ones stay (removeExpiredDeliveries)', {
  timeout: 60_000,
}, async () => {
  const { orgId, key } = await createOrgWithKey(server.url);
  // No event of this org exists, so the delivery process never sends to this address.
  const created = await call(server.url, 'POST', '/v1/webhooks', {
    key,
    body: { url: 'https://1.1.1.1/retention-hook', event_types: ['*'] },
  });
  assert.equal(created.status, 201, created.text);
  const endpointId = created.body.id as string;
  const now = Date.now();
  const ages = {
    expired: now - 5 * DAY_MS,
    justExpired: now - 2 * DAY_MS - 60_000,
    kept: now - 2 * DAY_MS + 60_000,
    recent: now - 1_000,
  };
  const ids = Object.fromEntries(Object.entries(ages).map(([name, ms]) => [name, uuidv7(ms)])) as Record<
    keyof typeof ages,
    string
  >;
  for (const [name, id] of Object.entries(ids)) {
    await sql`insert into webhook_deliveries (org_id, endpoint_id, id, event_id, event_received_at, status)
              values (${orgId}, ${endpointId}, ${id}, ${id}, ${new Date(ages[name as keyof typeof ages])}, 'succeeded')`;
  }
  await removeExpiredDeliveries(sql, 2, now);
  const left =
    await sql`select id::text as id from webhook_deliveries where org_id = ${orgId} and endpoint_id = ${endpointId} order by id`;
  assert.deepEqual(
    left.map((row) => row.id),
    [ids.kept, ids.recent],
  );
});
