import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { Pool } from 'undici';
import { call, createOrgWithKey, callOnNewConnection } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { assertAccurate, driveEvents, expectedAccepted } from './helpers/rate-load.js';
import { redisUnavailable, TestRedis } from './helpers/redis.js';
import { TestServer } from './helpers/server.js';

/**
 * Two server instances (two ports, 2 workers each) sharing one Postgres and one redis-server,
 * as behind a load balancer: limits, dedup and revocation hold across nodes; migrations run
 * once; a Redis outage degrades limits to local ones without losing or refusing events.
 */

const SQL_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../sql');
const EVENT = { type: 'multi.node', payload: { ok: true } };
const skipReason = redisUnavailable();

const fresh = callOnNewConnection;

async function pollUntil(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<number> {
  const started = performance.now();
  while (!(await check())) {
    if (performance.now() - started > timeoutMs) assert.fail(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return performance.now() - started;
}

describe('two nodes sharing Postgres and Redis', { skip: skipReason ?? false }, () => {
  let pg: TestPostgres;
  let redis: TestRedis;
  let dbName: string;
  let nodeA: TestServer;
  let nodeB: TestServer;

  before(async () => {
    pg = await TestPostgres.start();
    redis = await TestRedis.start();
    dbName = `multinode_${process.pid}`;
    const databaseUrl = await pg.createDatabase(dbName);
    const env = { REDIS_URL: redis.url, NODE_COUNT: '2' };
    // Both at the same moment on an empty database: the migration lock must make this safe.
    [nodeA, nodeB] = await Promise.all([
      TestServer.start({ databaseUrl, workers: 2, env }),
      TestServer.start({ databaseUrl, workers: 2, env }),
    ]);
  });

  after(async () => {
    await nodeA?.stop();
    await nodeB?.stop();
    await redis?.destroy();
    await pg?.stop();
  });

  test('migrations ran once although both nodes started together', async () => {
    const files = fs
      .readdirSync(SQL_DIR)
      .filter((name) => /^\d{3}_.*\.sql$/.test(name))
      .sort();
    const sql = pg.connect(dbName);
    try {
      const rows =
        await sql`select version, count(*)::int as n from schema_migrations group by version order by version`;
      assert.deepEqual(
        rows.map((row) => row.version),
        files,
      );
      assert.ok(rows.every((row) => row.n === 1));
    } finally {
      await sql.end({ timeout: 1 });
    }
    for (const node of [nodeA, nodeB]) {
      const status = await call(node.url, 'GET', '/status');
      assert.equal(status.status, 200);
      assert.deepEqual(status.body.checks, { ...status.body.checks, postgres: 'ok', redis: 'ok' });
    }
  });

  test('the rate limit is global: both nodes together stay within 10% over 10 s', async () => {
    const { key } = await createOrgWithKey(nodeA.url, { rate_limit_per_sec: 100, burst: 100 });
    const result = await driveEvents(
      [
        { url: nodeA.url, connections: 8 },
        { url: nodeB.url, connections: 8 },
      ],
      key,
      10_000,
    );
    assertAccurate(result, 100, 100, 'two nodes');
  });

  test('one dedup_id sent to both nodes at once stores one event', async () => {
    const { key } = await createOrgWithKey(nodeA.url);
    const event = { ...EVENT, dedup_id: `same-${Date.now()}` };
    const responses = await Promise.all(
      Array.from({ length: 12 }, (_, i) => fresh(i % 2 ? nodeB.url : nodeA.url, 'POST', '/v1/events', key, event)),
    );
    const statuses = responses.map((r) => r.status).sort();
    assert.deepEqual(
      statuses,
      [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 202],
      JSON.stringify(responses.map((r) => r.body)),
    );
    const ids = new Set(responses.map((r) => r.body.id));
    assert.equal(ids.size, 1, 'every caller gets the one stored id');
    const [id] = [...ids];
    for (const node of [nodeA, nodeB])
      assert.equal((await fresh(node.url, 'GET', `/v1/events/${id}`, key)).status, 200);
    const sql = pg.connect(dbName);
    try {
      const [row] = await sql`select count(*)::int as n from events where dedup_id = ${event.dedup_id}`;
      assert.equal(row!.n, 1);
    } finally {
      await sql.end({ timeout: 1 });
    }
  });

  test('a key revoked through node A is refused by node B within 2 s', async () => {
    const { key, keyId } = await createOrgWithKey(nodeA.url);
    // Warm node B's key caches on both its workers.
    const warm = await Promise.all(Array.from({ length: 8 }, () => fresh(nodeB.url, 'POST', '/v1/events', key, EVENT)));
    assert.ok(warm.every((r) => r.status === 202));
    const revoked = await call(nodeA.url, 'DELETE', `/v1/admin/keys/${keyId}`, { admin: true });
    assert.ok(revoked.status === 200 || revoked.status === 204, revoked.text);
    await pollUntil('node B refuses the revoked key on every worker', 2000, async () => {
      const tries = await Promise.all(
        Array.from({ length: 6 }, () => fresh(nodeB.url, 'POST', '/v1/events', key, EVENT)),
      );
      return tries.every((r) => r.status === 401);
    });
  });

  test('a limit changed through node A applies on node B within 2 s', async () => {
    const { orgId, key } = await createOrgWithKey(nodeA.url, { rate_limit_per_sec: 1000, burst: 1000 });
    const warm = await Promise.all(Array.from({ length: 8 }, () => fresh(nodeB.url, 'POST', '/v1/events', key, EVENT)));
    assert.ok(warm.every((r) => r.status === 202 && r.headers['ratelimit-limit'] === '1000'));
    const patched = await call(nodeA.url, 'PATCH', `/v1/admin/orgs/${orgId}`, {
      admin: true,
      body: { rate_limit_per_sec: 3, burst: 3 },
    });
    assert.equal(patched.status, 200, patched.text);
    await pollUntil('node B reports the new limit on every worker', 2000, async () => {
      const reads = await Promise.all(
        Array.from({ length: 6 }, () =>
          fresh(nodeB.url, 'GET', '/v1/events/00000000-0000-7000-8000-000000000000', key),
        ),
      );
      return reads.every((r) => r.headers['ratelimit-limit'] === '3');
    });
    const load = await driveEvents(
      [
        { url: nodeA.url, connections: 4 },
        { url: nodeB.url, connections: 4 },
      ],
      key,
      3000,
    );
    assert.ok(
      load.accepted <= expectedAccepted(3, 3, load.elapsedMs) + 4,
      `accepted ${load.accepted} at 3/s over ${load.elapsedMs.toFixed(0)} ms`,
    );
  });

  test('Redis stopped and restarted during ingestion: 202s continue, /status degraded then ok, shared limit recovers', async () => {
    const { key } = await createOrgWithKey(nodeA.url, { rate_limit_per_sec: 200, burst: 200 });
    let stop = false;
    const counts = { accepted: 0, limited: 0, other: [] as number[] };
    const pools = [new Pool(nodeA.url, { connections: 3 }), new Pool(nodeB.url, { connections: 3 })];
    const lane = async (pool: Pool) => {
      while (!stop) {
        const response = await pool.request({
          path: '/v1/events',
          method: 'POST',
          body: JSON.stringify(EVENT),
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        });
        await response.body.text();
        if (response.statusCode === 202) counts.accepted++;
        else if (response.statusCode === 429) counts.limited++;
        else counts.other.push(response.statusCode);
      }
    };
    const load = Promise.all(pools.flatMap((pool) => [lane(pool), lane(pool), lane(pool)]));
    try {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      await redis.stop();
      for (const node of [nodeA, nodeB]) {
        await pollUntil('/status shows redis down', 10_000, async () => {
          const status = await call(node.url, 'GET', '/status');
          return (
            status.status === 200 &&
            status.body.status === 'degraded' &&
            status.body.checks.redis === 'down' &&
            status.body.checks.postgres === 'ok'
          );
        });
      }
      const before = counts.accepted;
      await new Promise((resolve) => setTimeout(resolve, 2000));
      assert.ok(
        counts.accepted > before + 50,
        `ingestion continued on local limits while Redis was down (${counts.accepted - before} accepted in 2 s)`,
      );

      await redis.restart();
      // Every worker reconnects on its own backoff: ask each node several times, on new connections.
      for (const node of [nodeA, nodeB]) {
        await pollUntil('/status shows redis ok again on every worker', 15_000, async () => {
          const statuses = await Promise.all(Array.from({ length: 6 }, () => fresh(node.url, 'GET', '/status')));
          return statuses.every(
            (status) => status.status === 200 && status.body.status === 'ok' && status.body.checks.redis === 'ok',
          );
        });
      }
    } finally {
      stop = true;
      await load;
      await Promise.all(pools.map((pool) => pool.close()));
    }
    assert.deepEqual(counts.other, [], 'no 5xx (or anything but 202/429) at any point');
    for (const node of [nodeA, nodeB]) {
      const warnings = node.output.split('\n').filter((line) => line.includes('redis is unreachable'));
      assert.ok(
        warnings.length >= 1 && warnings.length <= 2,
        `one warning per worker per outage, got ${warnings.length}`,
      );
    }

    // Shared again: a fresh org's limit holds across both nodes.
    const { key: after } = await createOrgWithKey(nodeB.url, { rate_limit_per_sec: 100, burst: 100 });
    const result = await driveEvents(
      [
        { url: nodeA.url, connections: 8 },
        { url: nodeB.url, connections: 8 },
      ],
      after,
      5_000,
    );
    assertAccurate(result, 100, 100, 'after Redis came back');
  });
});
