import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Sql } from '../src/db/connect.js';
import { uuidv7 } from '../src/ids.js';
import { call, createOrgWithKey } from './helpers/api.js';
import { insertEventRow, takeFlushFence, TestPostgres } from './helpers/postgres.js';
import { TestServer } from './helpers/server.js';
import { assertExactlyOnce, deliveryCounts } from './helpers/webhook-kit.js';
import { Receiver, waitFor } from './webhooks-receiver.js';

/**
 * The fan-out's no-skip promise with one global cursor (src/delivery/fanout.ts): while producers
 * ingest concurrently through two HTTP workers whose group commits overlap (and a transaction or
 * two commits far behind its xid), every accepted event reaches every matching endpoint exactly
 * once; an endpoint created or re-enabled while events flow gets every event received at or after
 * its deliver_from, and nothing received before it. Also: the fan-out keeps the events BRIN
 * summarized. Upgrades from the cursors of 003-005: webhooks-upgrade.test.ts.
 */

const LOCAL = { WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOW_PRIVATE: 'true' };
const PRODUCERS = 6;
const BATCH_SIZE = 25;

let pg: TestPostgres;
let server: TestServer;
let base: string;
let db: Sql;
const receivers: Receiver[] = [];

before(async () => {
  pg = await TestPostgres.start();
  server = await TestServer.start({ databaseUrl: await pg.createDatabase('fanout'), workers: 2, env: LOCAL });
  base = server.url;
  db = pg.connect('fanout');
});

after(async () => {
  for (const receiver of receivers) await receiver.close();
  await db?.end({ timeout: 1 });
  await server?.stop();
  await pg?.stop();
});

async function receiver(): Promise<Receiver> {
  const started = await Receiver.start();
  receivers.push(started);
  return started;
}

async function createWebhook(key: string, url: string, body: Record<string, unknown> = {}): Promise<{ id: string }> {
  const response = await call(base, 'POST', '/v1/webhooks', { key, body: { url, ...body } });
  assert.equal(response.status, 201, response.text);
  return response.body;
}

interface Accepted {
  id: string;
  type: string;
}

/** Sends singles and batches for `key` until `stop()` is true or `requests` are done. */
async function produce(
  key: string,
  producer: number,
  accepted: Accepted[],
  until: { stop: boolean },
  requests = Infinity,
): Promise<void> {
  for (let n = 0; n < requests && !until.stop; n++) {
    if (n % 4 === 0) {
      const events = Array.from({ length: BATCH_SIZE }, (_, i) => ({
        type: 'load.batch',
        payload: { producer, n, i },
      }));
      const response = await call(base, 'POST', '/v1/events/batch', { key, body: { events } });
      assert.equal(response.status, 200, response.text);
      for (const result of response.body.results)
        if (result.status === 'accepted') accepted.push({ id: result.id, type: 'load.batch' });
    } else {
      const response = await call(base, 'POST', '/v1/events', {
        key,
        body: { type: 'load.single', payload: { producer, n } },
      });
      if (response.status === 202) accepted.push({ id: response.body.id, type: 'load.single' });
      else assert.equal(response.status, 503, response.text); // overload is allowed; nothing stored then
    }
  }
}

/**
 * An event inserted by a fenced flush whose transaction stays open for `holdMs` while
 * everything else goes on: rows of later flushes commit with higher seq meanwhile, so a cursor
 * that ignored the watermark would already have passed it when it commits.
 */
async function lateCommit(orgId: string, holdMs: number): Promise<string> {
  const id = uuidv7(Date.now());
  await db.begin(async (tx) => {
    await takeFlushFence(tx);
    await insertEventRow(tx, { orgId, id, type: 'late.commit', receivedAt: new Date() });
    await new Promise((resolve) => setTimeout(resolve, holdMs));
  });
  return id;
}

test('concurrent producers: every accepted event reaches each matching endpoint exactly once', async () => {
  const orgA = await createOrgWithKey(base, { name: 'a' });
  const orgB = await createOrgWithKey(base, { name: 'b' });
  const quiet = await createOrgWithKey(base, { name: 'no endpoints' });
  const allOfA = await receiver();
  const singlesOfA = await receiver();
  const allOfB = await receiver();
  await createWebhook(orgA.key, allOfA.url);
  await createWebhook(orgA.key, singlesOfA.url, { event_types: ['load.single', 'late.*'] });
  await createWebhook(orgB.key, allOfB.url);

  const acceptedA: Accepted[] = [];
  const acceptedB: Accepted[] = [];
  const acceptedQuiet: Accepted[] = [];
  const until = { stop: false };
  const producers: Promise<void>[] = [];
  for (let p = 0; p < PRODUCERS; p++) {
    const [key, list] =
      p % 3 === 0 ? [orgA.key, acceptedA] : p % 3 === 1 ? [orgB.key, acceptedB] : [quiet.key, acceptedQuiet];
    producers.push(produce(key, p, list, until, 80));
  }
  // Two registered flushes that commit long after rows with higher seq, while producers run.
  const late = [
    lateCommit(orgA.orgId, 1500),
    new Promise<void>((resolve) => setTimeout(resolve, 300)).then(() => lateCommit(orgA.orgId, 800)),
  ];
  await Promise.all(producers);
  for (const id of await Promise.all(late)) acceptedA.push({ id, type: 'late.commit' });
  assert.ok(
    acceptedA.length > 100 && acceptedB.length > 100,
    `enough events (${acceptedA.length}, ${acceptedB.length})`,
  );

  const expectedA = acceptedA.map((e) => e.id);
  const expectedSinglesA = acceptedA.filter((e) => e.type !== 'load.batch').map((e) => e.id);
  const expectedB = acceptedB.map((e) => e.id);
  await waitFor(
    'every event of org A at its catch-all endpoint',
    () => expectedA.every((id) => allOfA.ids().has(id)),
    120_000,
    100,
  );
  await waitFor(
    'every matching event of org A at its filtered endpoint',
    () => expectedSinglesA.every((id) => singlesOfA.ids().has(id)),
    120_000,
    100,
  );
  await waitFor('every event of org B', () => expectedB.every((id) => allOfB.ids().has(id)), 120_000, 100);
  // Give a duplicate (a second fan-out of the same event) time to show up before counting.
  await new Promise((resolve) => setTimeout(resolve, 1500));
  assertExactlyOnce(allOfA, expectedA, 'org A, all types');
  assertExactlyOnce(singlesOfA, expectedSinglesA, 'org A, load.single and late.*');
  assertExactlyOnce(allOfB, expectedB, 'org B');

  const [row] = await db`
    select count(*)::int as n from webhook_deliveries d join webhook_endpoints e on e.id = d.endpoint_id
    where e.org_id = ${quiet.orgId}`;
  assert.equal(row!.n, 0, 'an org without endpoints gets no delivery rows');
});

test("events acknowledged in the inbox before an endpoint's stream reads them are delivered too", async () => {
  const org = await createOrgWithKey(base, { name: 'acks early' });
  const hook = await receiver();
  await createWebhook(org.key, hook.url);
  // Committed acknowledged, the way an inbox consumer that acks at once leaves them: such rows
  // are found through the acknowledged-events index, the others through the inbox's.
  const ids: string[] = [];
  for (let i = 0; i < 6; i++) {
    const id = uuidv7(Date.now());
    await insertEventRow(db, {
      orgId: org.orgId,
      id,
      type: 'acked.early',
      receivedAt: new Date(),
      ackedAt: i % 2 === 0 ? new Date() : null,
    });
    ids.push(id);
  }
  await waitFor('every event, acknowledged or not', () => ids.every((id) => hook.ids().has(id)), 20_000, 50);
  assertExactlyOnce(hook, ids, 'acknowledged and unacknowledged events');
});

test('endpoints created or re-enabled while events flow get every event received from their deliver_from on', async () => {
  const { key } = await createOrgWithKey(base, { name: 'flowing' });
  const accepted: Accepted[] = [];
  const until = { stop: false };
  const producers = Array.from({ length: 4 }, (_, p) => produce(key, p, accepted, until));
  const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  const reEnabledHook = await receiver();
  const reEnabled = await createWebhook(key, reEnabledHook.url);
  await pause(600);
  const firstHook = await receiver();
  const first = await createWebhook(key, firstHook.url);
  await pause(500);
  assert.equal(
    (await call(base, 'PATCH', `/v1/webhooks/${reEnabled.id}`, { key, body: { enabled: false } })).status,
    200,
  );
  const secondHook = await receiver();
  const second = await createWebhook(key, secondHook.url);
  await pause(500);
  assert.equal(
    (await call(base, 'PATCH', `/v1/webhooks/${reEnabled.id}`, { key, body: { enabled: true } })).status,
    200,
  );
  await pause(600);
  until.stop = true;
  await Promise.all(producers);
  assert.ok(accepted.length > 100, `enough events (${accepted.length})`);

  /** Accepted ids received at or after the endpoint's deliver_from, and the ones before it. */
  const owed = async (endpointId: string) => {
    const rows = await db`
      select ev.id, ev.received_at >= e.deliver_from as owed
      from events ev join webhook_endpoints e on e.id = ${endpointId}
      where ev.id = any(${accepted.map((a) => a.id)}::uuid[])`;
    assert.equal(rows.length, accepted.length, 'every accepted event is stored');
    return {
      after: rows.filter((r) => r.owed).map((r) => r.id as string),
      before: rows.filter((r) => !r.owed).map((r) => r.id as string),
    };
  };
  for (const [hook, endpoint, name] of [
    [firstHook, first, 'first'],
    [secondHook, second, 'second'],
  ] as const) {
    const { after: expected, before: earlier } = await owed(endpoint.id);
    assert.ok(
      expected.length > 0 && earlier.length > 0,
      `${name}: events flowed before and after it was created (${earlier.length}, ${expected.length})`,
    );
    await waitFor(
      `${name} endpoint to get every event from its deliver_from on`,
      () => expected.every((id) => hook.ids().has(id)),
      120_000,
      100,
    );
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assertExactlyOnce(hook, expected, `${name} endpoint`);
  }
  // Re-enabled: everything from the new deliver_from on (events before it, from its first life,
  // may also arrive: deliveries created before the disable are sent once it is enabled again).
  const { after: sinceReEnable } = await owed(reEnabled.id);
  assert.ok(sinceReEnable.length > 0, 'events flowed after the re-enable');
  await waitFor(
    'the re-enabled endpoint to get every event from its new deliver_from on',
    () => sinceReEnable.every((id) => reEnabledHook.ids().has(id)),
    120_000,
    100,
  );
  const twice = [...deliveryCounts(reEnabledHook)].filter(([, n]) => n > 1);
  assert.deepEqual(twice, [], 'the re-enabled endpoint gets no event twice');
  // Neither a failed read nor a failed progress write was logged along the way.
  assert.doesNotMatch(
    server.output,
    /reading events for a webhook endpoint failed|writing webhook delivery progress failed/,
    server.output,
  );
});
