import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Sql } from '../src/db/connect.js';
import { secretKey } from '../src/delivery/signature.js';
import { SigningKeys } from '../src/delivery/signing-keys.js';
import { ENDPOINTS_CHANGED_CHANNEL } from '../src/delivery/endpoint-orgs.js';
import { call, createOrgWithKey } from './helpers/api.js';
import { changesApplyWithinOneSecond, leaseHolder, rotationUnderLoad } from './helpers/endpoint-changes.js';
import { TestPostgres } from './helpers/postgres.js';
import { workerPids } from './helpers/processes.js';
import { redisUnavailable, TestRedis } from './helpers/redis.js';
import { TestServer } from './helpers/server.js';
import { webhookKit } from './helpers/webhook-kit.js';
import { waitFor } from './webhooks-receiver.js';

/**
 * API.md §5: "Changes to an endpoint (PATCH, delete, disable) apply, on every process and node, to
 * every delivery that starts more than 1 s after the response. rotate-secret applies at once."
 * Black-box, to a real receiver: one node with two delivery processes, then two nodes sharing one
 * Postgres (with Redis, and without it: then only Postgres's NOTIFY carries the change), the
 * change always sent to the node that does NOT hold the endpoint.
 */

const LOCAL = {
  WEBHOOK_ALLOW_HTTP: 'true',
  WEBHOOK_ALLOW_PRIVATE: 'true',
  WEBHOOK_TIMEOUT_MS: '2000',
  WEBHOOK_RETRY_SCHEDULE: '200ms,200ms',
};
const VERBOSE = Boolean(process.env.WEBHOOK_TEST_VERBOSE);

describe('SigningKeys (pure core, a fake Postgres)', () => {
  const ORG = '00000000-0000-7000-8000-000000000001';
  const ID = '00000000-0000-7000-8000-000000000002';
  const row = (secret: string, previous: string | null = null, enabled = true, updatedAtMs = 1) => ({
    id: ID,
    org_id: ORG,
    enabled,
    secret,
    previous_secret: previous,
    updated_at_ms: updatedAtMs,
  });
  /** Answers the keys query from `table`, counting queries. */
  function fakePostgres(table: Map<string, ReturnType<typeof row>>) {
    const log = { queries: 0 };
    const sql = ((_strings: TemplateStringsArray, ...values: unknown[]) => {
      log.queries++;
      const ids = values[1] as string[];
      return Promise.resolve(ids.flatMap((id) => (table.has(id) ? [table.get(id)!] : [])));
    }) as unknown as Sql;
    return { sql, log };
  }
  const user = () => {
    const pumped: number[] = [];
    return { endpointId: ID, orgId: ORG, pump: () => pumped.push(performance.now()), pumped };
  };
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  test('keys read within the bound sign at once; older ones wait for one read, which brings a rotation into the same array', async () => {
    const table = new Map([[ID, row('whsec_AAAA')]]);
    const { sql, log } = fakePostgres(table);
    let reloads = 0;
    const keys = new SigningKeys(sql, () => reloads++, 100, 10_000);
    const stream = user();
    const shared = keys.observe(row('whsec_AAAA'), performance.now());
    assert.equal(keys.ready(stream), true);
    assert.equal(log.queries, 0, 'fresh keys cost no query');
    table.set(ID, row('whsec_BBBB', 'whsec_AAAA', true, 2)); // rotated meanwhile
    await sleep(120);
    assert.equal(keys.ready(stream), false, 'older than the bound: no signing');
    await waitFor('the re-read', () => stream.pumped.length === 1, 2_000, 5);
    assert.equal(log.queries, 1);
    // The row changed (updated_at) since the settings were loaded: no send until they are loaded again.
    assert.equal(keys.ready(stream), false, 'changed since the settings were loaded');
    assert.equal(reloads, 1, 'the engine is asked to load them');
    keys.observe(row('whsec_BBBB', 'whsec_AAAA', true, 2), performance.now()); // the engine's load
    assert.equal(keys.ready(stream), true);
    assert.deepEqual(
      shared,
      [secretKey('whsec_BBBB'), secretKey('whsec_AAAA')],
      'the array every settings object holds now has the new key first',
    );
  });

  test('a read sent before a later one never replaces its answer (a slow sync cannot bring old keys back)', () => {
    const { sql } = fakePostgres(new Map());
    const keys = new SigningKeys(sql, () => {}, 1_000, 10_000);
    const later = performance.now();
    const shared = keys.observe(row('whsec_BBBB', 'whsec_AAAA'), later);
    assert.equal(keys.observe(row('whsec_AAAA'), later - 50), shared);
    assert.deepEqual(shared, [secretKey('whsec_BBBB'), secretKey('whsec_AAAA')]);
  });

  test('a disabled or deleted endpoint signs nothing once a read has seen it', async () => {
    const table = new Map([[ID, row('whsec_AAAA')]]);
    const { sql } = fakePostgres(table);
    const keys = new SigningKeys(sql, () => {}, 50, 10_000);
    const stream = user();
    keys.observe(row('whsec_AAAA'), performance.now());
    table.set(ID, row('whsec_AAAA', null, false));
    await sleep(60);
    assert.equal(keys.ready(stream), false);
    await sleep(20);
    assert.equal(keys.ready(stream), false, 'disabled');
    table.delete(ID);
    await sleep(60);
    assert.equal(keys.ready(stream), false);
    await sleep(20);
    assert.equal(keys.ready(stream), false, 'deleted');
    assert.deepEqual(stream.pumped, [], 'never woken to sign');
  });

  test('a change seen by a read holds sends until a settings load sent after that read; an older load does not count', async () => {
    const table = new Map([[ID, row('whsec_AAAA')]]);
    const { sql } = fakePostgres(table);
    let reloads = 0;
    const keys = new SigningKeys(sql, () => reloads++, 50, 10_000);
    const stream = user();
    const loadSentBefore = performance.now();
    keys.observe(row('whsec_AAAA'), loadSentBefore);
    // A PATCH of the URL commits: updated_at moves (here to an earlier time: a transaction's
    // start, committed after a later one; only equality counts).
    table.set(ID, row('whsec_AAAA', null, true, 0));
    await sleep(60);
    assert.equal(keys.ready(stream), false);
    await waitFor('the re-read', () => stream.pumped.length === 1, 2_000, 5);
    assert.equal(keys.ready(stream), false, 'changed since the load');
    assert.ok(reloads >= 1);
    keys.observe(row('whsec_AAAA'), loadSentBefore - 1); // a load sent before the read: old news
    assert.equal(keys.ready(stream), false);
    keys.observe(row('whsec_AAAA', null, true, 0), performance.now());
    assert.equal(keys.ready(stream), true);
  });
});

let pg: TestPostgres;
const kit = webhookKit(() => {
  throw new Error('every call here names its node');
});

before(async () => {
  pg = await TestPostgres.start();
});

after(async () => {
  await kit.closeReceivers();
  await pg?.stop();
});

test('one node, two delivery processes: every delivery that starts after rotate-secret answers carries the new signature', {
  timeout: 90_000,
}, async () => {
  const server = await TestServer.start({
    databaseUrl: await pg.createDatabase('changes_one'),
    workers: 1,
    env: { ...LOCAL, DELIVERY_WORKERS: '2' },
  });
  try {
    const { key } = await createOrgWithKey(server.url);
    for (let round = 0; round < 2; round++) {
      const hook = await kit.receiver();
      const endpoint = await kit.createWebhook(key, { url: hook.url }, server.url);
      const result = await rotationUnderLoad(kit, {
        key,
        endpointId: endpoint.id,
        hook,
        oldSecret: endpoint.secret,
        sendAt: [server.url],
        rotateAt: server.url,
      });
      if (VERBOSE)
        console.log(
          `round ${round}: ${result.checked} deliveries checked; the rotation answered in ${result.answeredInMs} ms`,
        );
    }
  } finally {
    assert.equal(await server.stop(), 0);
  }
});

test('the automatic disabling on 410 Gone is announced to every process (a NOTIFY at its commit)', {
  timeout: 60_000,
}, async () => {
  const server = await TestServer.start({
    databaseUrl: await pg.createDatabase('changes_gone'),
    workers: 1,
    env: LOCAL,
  });
  const db = pg.connect('changes_gone');
  try {
    const { key, orgId } = await createOrgWithKey(server.url);
    const gone = await kit.receiver(() => ({ status: 410 }));
    const endpoint = await kit.createWebhook(key, { url: gone.url }, server.url);
    const heard: string[] = [];
    const listener = await db.listen(ENDPOINTS_CHANGED_CHANNEL, (payload) => heard.push(payload));
    await kit.send(key, server.url);
    await waitFor(
      'the endpoint disabled',
      async () => !(await call(server.url, 'GET', `/v1/webhooks/${endpoint.id}`, { key })).body.enabled,
      20_000,
      50,
    );
    await waitFor('the NOTIFY of the disabling', () => heard.includes(orgId), 5_000, 20);
    await listener.unlisten();
  } finally {
    await db.end({ timeout: 1 });
    assert.equal(await server.stop(), 0);
  }
});

for (const withRedis of [true, false]) {
  describe(`two nodes sharing one Postgres${withRedis ? ' and one Redis' : ', no Redis'}`, {
    skip: (withRedis && redisUnavailable()) || false,
  }, () => {
    let redis: TestRedis | null = null;
    let nodes: TestServer[] = [];
    let db: ReturnType<TestPostgres['connect']>;

    before(async () => {
      const name = withRedis ? 'changes_two_redis' : 'changes_two';
      const databaseUrl = await pg.createDatabase(name);
      if (withRedis) redis = await TestRedis.start();
      const env = { ...LOCAL, NODE_COUNT: '2', DELIVERY_WORKERS: '1', ...(redis ? { REDIS_URL: redis.url } : {}) };
      // One after the other: both migrating an empty database at once is multinode.test.ts's business.
      nodes.push(await TestServer.start({ databaseUrl, workers: 1, env }));
      nodes.push(await TestServer.start({ databaseUrl, workers: 1, env }));
      db = pg.connect(name);
    });

    after(async () => {
      await db?.end({ timeout: 1 });
      await Promise.all(nodes.map((node) => node.stop()));
      nodes = [];
      await redis?.destroy();
    });

    const otherNode = async (endpointId: string) => {
      const holder = await leaseHolder(db, endpointId, nodes, (pid) => workerPids(pid, 'delivery'));
      return { holder: nodes[holder]!, other: nodes[1 - holder]! };
    };

    test('rotate-secret through the node that does not deliver: every delivery that starts after its answer carries the new signature', {
      timeout: 90_000,
    }, async () => {
      const { key } = await createOrgWithKey(nodes[0]!.url);
      const hook = await kit.receiver();
      const endpoint = await kit.createWebhook(key, { url: hook.url }, nodes[0]!.url);
      const { other } = await otherNode(endpoint.id);
      const result = await rotationUnderLoad(kit, {
        key,
        endpointId: endpoint.id,
        hook,
        oldSecret: endpoint.secret,
        sendAt: nodes.map((node) => node.url),
        rotateAt: other.url,
      });
      if (VERBOSE)
        console.log(`${result.checked} deliveries checked; the rotation answered in ${result.answeredInMs} ms`);
    });

    test('PATCH of the url, disable and delete through the node that does not deliver apply to every delivery starting more than 1 s later', {
      timeout: 90_000,
    }, async () => {
      const { key } = await createOrgWithKey(nodes[0]!.url);
      const hook = await kit.receiver();
      const endpoint = await kit.createWebhook(key, { url: hook.url }, nodes[0]!.url);
      const { other } = await otherNode(endpoint.id);
      await changesApplyWithinOneSecond(kit, {
        key,
        endpointId: endpoint.id,
        hook,
        sendAt: nodes.map((node) => node.url),
        changeAt: other.url,
      });
    });

    // Once, without Redis: an endpoint change travels by NOTIFY alone either way.
    if (!withRedis)
      test('with every LISTEN connection cut as soon as it comes back, a PATCH of the url through the other node still applies to every delivery that starts 1 s after its answer', {
        timeout: 90_000,
      }, async () => {
        // The NOTIFY of the change is lost here, and the 2 s heartbeat was all that was left: a
        // send 1.1 s after the answer went to the old URL about half the time. Now every send signs
        // with keys read less than 1 s before it, and that read also sees the row's updated_at.
        let cutting = true;
        let cut = 0;
        const cutter = (async () => {
          while (cutting) {
            const rows = await db`select pg_terminate_backend(pid) as ok from pg_stat_activity
                                where datname = current_database() and pid <> pg_backend_pid() and query ilike 'listen %'`;
            cut += rows.filter((row) => row.ok).length;
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
        })();
        try {
          const { key } = await createOrgWithKey(nodes[0]!.url);
          let hook = await kit.receiver();
          const endpoint = await kit.createWebhook(key, { url: hook.url }, nodes[0]!.url);
          const { holder, other } = await otherNode(endpoint.id);
          const first = (await kit.send(key, holder.url)).id;
          await waitFor('the first event delivered', () => hook.ids().has(first), 20_000, 20);
          for (let round = 0; round < 3; round++) {
            const moved = await kit.receiver();
            const patched = await call(other.url, 'PATCH', `/v1/webhooks/${endpoint.id}`, {
              key,
              body: { url: moved.url },
            });
            assert.equal(patched.status, 200, patched.text);
            await new Promise((resolve) => setTimeout(resolve, 1_100));
            const ids: string[] = [];
            for (let i = 0; i < 4; i++) ids.push((await kit.send(key, holder.url)).id);
            await waitFor(
              `round ${round}: the events at the new URL`,
              () => ids.every((id) => moved.ids().has(id)),
              20_000,
              20,
            );
            assert.deepEqual(
              ids.filter((id) => hook.ids().has(id)),
              [],
              `round ${round}: sent 1.1 s after the PATCH, yet delivered to the old URL`,
            );
            hook = moved;
          }
          assert.ok(cut > 0, 'no LISTEN connection was cut: the test proves nothing');
        } finally {
          cutting = false;
          await cutter.catch(() => {});
        }
      });
  });
}
