import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { openDatabase, type Sql } from '../src/db/connect.js';
import { call, callOnNewConnection, createOrgWithKey } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { TestServer } from './helpers/server.js';

/**
 * API.md §3b: a change to an org's event types, or to its require_event_types, applies on every
 * process and node within 2 s. Two server instances (two ports, 2 HTTP workers each) share one
 * Postgres, as behind a load balancer: each change goes through one node and is checked on every
 * worker of the other, with new connections (the kernel spreads them over the workers). Then a
 * change whose NOTIFY never comes (written straight into the database, as if the listening
 * connections were reconnecting) must still arrive, through the revision poll.
 */

const CONTRACT_MS = 2_000;
const SCHEMA = { type: 'object', required: ['amount'], properties: { amount: { type: 'number' } } };

/** Milliseconds until every one of 8 new connections to `url` gets `status` for `event`; fails after 5 s. */
async function untilEveryWorker(url: string, key: string, event: unknown, status: number): Promise<number> {
  const started = performance.now();
  for (;;) {
    const answers = await Promise.all(
      Array.from({ length: 8 }, () => callOnNewConnection(url, 'POST', '/v1/events', key, event)),
    );
    if (answers.every((answer) => answer.status === status)) return performance.now() - started;
    if (performance.now() - started > 5_000)
      assert.fail(`not every worker answered ${status}: ${answers.map((answer) => answer.status).join(',')}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('event type changes across two nodes', () => {
  let pg: TestPostgres;
  let db: Sql;
  let nodeA: TestServer;
  let nodeB: TestServer;
  let databaseUrl: string;

  before(async () => {
    pg = await TestPostgres.start();
    databaseUrl = await pg.createDatabase('event_types_nodes');
    [nodeA, nodeB] = await Promise.all([
      TestServer.start({ databaseUrl, workers: 2 }),
      TestServer.start({ databaseUrl, workers: 2 }),
    ]);
    db = openDatabase(databaseUrl, { max: 2, name: 'event-types-nodes-test' });
  });

  after(async () => {
    await db?.end({ timeout: 1 });
    await Promise.all([nodeA?.stop(), nodeB?.stop()]);
    await pg?.stop();
  });

  test('a type registered, changed and deleted through one node applies on every worker of the other within 2 s', async () => {
    const { key } = await createOrgWithKey(nodeA.url);
    // Warm node B's workers on the org, so they hold it (and its absence of types) first.
    await untilEveryWorker(nodeB.url, key, { type: 'pay.made', payload: { amount: 'x' } }, 202);
    // The first schema a process ever loads also pays ajv's import and first compile (~150 ms of
    // CPU on a quiet machine, docs/EVENT-TYPES.md): another org's type registered first takes
    // that one-time cost out of what is measured here, the propagation of a change (at load 12
    // in CI it was the difference between 1.0-1.4 s and 2.05 s).
    const other = await createOrgWithKey(nodeA.url);
    assert.equal(
      (await call(nodeA.url, 'PUT', '/v1/event-types/warm.up', { key: other.key, body: { schema: SCHEMA } })).status,
      201,
    );
    await untilEveryWorker(nodeB.url, other.key, { type: 'warm.up', payload: { amount: 'x' } }, 422);

    assert.equal(
      (await call(nodeA.url, 'PUT', '/v1/event-types/pay.made', { key, body: { schema: SCHEMA } })).status,
      201,
    );
    const registered = await untilEveryWorker(nodeB.url, key, { type: 'pay.made', payload: { amount: 'x' } }, 422);

    const looser = { ...SCHEMA, properties: { amount: { type: ['number', 'string'] } } };
    assert.equal(
      (await call(nodeB.url, 'PUT', '/v1/event-types/pay.made', { key, body: { schema: looser } })).status,
      200,
    );
    const changed = await untilEveryWorker(nodeA.url, key, { type: 'pay.made', payload: { amount: 'x' } }, 202);
    const shown = await call(nodeA.url, 'GET', '/v1/event-types/pay.made', { key });
    assert.equal(shown.body.version, 2);

    assert.equal(
      (await call(nodeA.url, 'PUT', '/v1/event-types/pay.made', { key, body: { schema: SCHEMA } })).status,
      200,
    );
    await untilEveryWorker(nodeB.url, key, { type: 'pay.made', payload: { amount: 'x' } }, 422);
    assert.equal((await call(nodeA.url, 'DELETE', '/v1/event-types/pay.made', { key })).status, 204);
    const deleted = await untilEveryWorker(nodeB.url, key, { type: 'pay.made', payload: { amount: 'x' } }, 202);

    console.log(
      `applied on the other node after: registered ${registered.toFixed(0)} ms, changed ${changed.toFixed(0)} ms, deleted ${deleted.toFixed(0)} ms`,
    );
    for (const ms of [registered, changed, deleted])
      assert.ok(ms <= CONTRACT_MS, `${ms.toFixed(0)} ms (contract: 2 s)`);
  });

  test("require_event_types set through node A's admin API applies on every worker of node B within 2 s, and clearing it too", async () => {
    const { key, orgId } = await createOrgWithKey(nodeA.url);
    await untilEveryWorker(nodeB.url, key, { type: 'free.form', payload: {} }, 202);
    assert.equal(
      (await call(nodeA.url, 'PATCH', `/v1/admin/orgs/${orgId}`, { admin: true, body: { require_event_types: true } }))
        .status,
      200,
    );
    const set = await untilEveryWorker(nodeB.url, key, { type: 'free.form', payload: {} }, 422);
    assert.equal(
      (await call(nodeA.url, 'PATCH', `/v1/admin/orgs/${orgId}`, { admin: true, body: { require_event_types: false } }))
        .status,
      200,
    );
    const cleared = await untilEveryWorker(nodeB.url, key, { type: 'free.form', payload: {} }, 202);
    console.log(`require_event_types applied after ${set.toFixed(0)} ms, cleared after ${cleared.toFixed(0)} ms`);
    for (const ms of [set, cleared]) assert.ok(ms <= CONTRACT_MS, `${ms.toFixed(0)} ms (contract: 2 s)`);
  });

  test("a node that starts later knows every org's types and settings from its first request", async () => {
    const typed = await createOrgWithKey(nodeA.url);
    const strict = await createOrgWithKey(nodeA.url);
    assert.equal(
      (await call(nodeA.url, 'PUT', '/v1/event-types/late.start', { key: typed.key, body: { schema: SCHEMA } })).status,
      201,
    );
    assert.equal(
      (
        await call(nodeA.url, 'PATCH', `/v1/admin/orgs/${strict.orgId}`, {
          admin: true,
          body: { require_event_types: true },
        })
      ).status,
      200,
    );
    const nodeC = await TestServer.start({ databaseUrl, workers: 1 });
    try {
      assert.equal(
        (
          await callOnNewConnection(nodeC.url, 'POST', '/v1/events', typed.key, {
            type: 'late.start',
            payload: { amount: 'x' },
          })
        ).status,
        422,
      );
      assert.equal(
        (
          await callOnNewConnection(nodeC.url, 'POST', '/v1/events', typed.key, {
            type: 'late.start',
            payload: { amount: 1 },
          })
        ).status,
        202,
      );
      assert.equal(
        (await callOnNewConnection(nodeC.url, 'POST', '/v1/events', strict.key, { type: 'unregistered', payload: {} }))
          .status,
        422,
      );
    } finally {
      await nodeC.stop();
    }
  });

  test('a change whose NOTIFY never arrives still applies everywhere within 2 s (the revision poll)', async () => {
    const { key, orgId } = await createOrgWithKey(nodeA.url);
    assert.equal(
      (await call(nodeA.url, 'PUT', '/v1/event-types/quiet.change', { key, body: { schema: SCHEMA } })).status,
      201,
    );
    await untilEveryWorker(nodeB.url, key, { type: 'quiet.change', payload: { amount: 'x' } }, 422);
    await untilEveryWorker(nodeA.url, key, { type: 'quiet.change', payload: { amount: 'x' } }, 422);

    // What a PUT writes, without its pg_notify.
    await db.begin(async (tx) => {
      await tx`update event_types set schema = ${JSON.stringify({ type: 'object' })}::text::json, version = version + 1, updated_at = now()
               where org_id = ${orgId} and type = 'quiet.change'`;
      await tx`update orgs set event_types_revision = event_types_revision + 1 where id = ${orgId}`;
    });
    const started = performance.now();
    const [onA, onB] = await Promise.all([
      untilEveryWorker(nodeA.url, key, { type: 'quiet.change', payload: { amount: 'x' } }, 202),
      untilEveryWorker(nodeB.url, key, { type: 'quiet.change', payload: { amount: 'x' } }, 202),
    ]);
    console.log(`without a NOTIFY: node A after ${onA.toFixed(0)} ms, node B after ${onB.toFixed(0)} ms`);
    assert.ok(
      performance.now() - started <= CONTRACT_MS,
      `${(performance.now() - started).toFixed(0)} ms (contract: 2 s)`,
    );
    const stored = await callOnNewConnection(nodeB.url, 'POST', '/v1/events', key, {
      type: 'quiet.change',
      payload: { amount: 'x' },
    });
    const shown = await call(nodeB.url, 'GET', `/v1/events/${stored.body.id}`, { key });
    assert.equal(shown.body.schema_version, 2, 'checked against, and stamped with, the new version');
  });
});
