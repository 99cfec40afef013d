import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { openHttpDatabase } from '../src/cluster/http-app.js';
import { loadConfig } from '../src/config.js';
import { COPY_EVENTS } from '../src/ingest/batcher.js';
import { call, createOrgWithKey, callOnNewConnection, produceMixed } from './helpers/api.js';
import { TestCitus, citusUnavailable } from './helpers/citus.js';
import { driveEvents, expectedAccepted } from './helpers/rate-load.js';
import { redisUnavailable, TestRedis } from './helpers/redis.js';
import { changesApplyWithinOneSecond, leaseHolder, rotationUnderLoad } from './helpers/endpoint-changes.js';
import { workerPids } from './helpers/processes.js';
import { TestServer } from './helpers/server.js';
import { webhookKit, webhookId } from './helpers/webhook-kit.js';
import { waitFor, type ReceivedWebhook } from './webhooks-receiver.js';
import { keyOrderViolations, sendKeyed } from './helpers/key-order.js';
import { openKeyedDeliveries } from '../src/delivery/endpoint-settings.js';
import type { Sql } from '../src/db/connect.js';
import { parseEventListParams } from '../src/event-list/params.js';
import { eventListQuery } from '../src/event-list/queries.js';

/**
 * The server on Citus (DESIGN.md "Scaling past one machine"): two server instances whose
 * DATABASE_URL is the coordinator of a throwaway 3-node cluster, sharing one Redis. The schema
 * must really be distributed by org, and every guarantee of API.md must still hold, over HTTP:
 * 202 only after commit, exact dedup, a cursor that never skips, tenancy, webhooks sent once
 * from two nodes, limits and revocation across nodes. One cluster for the file; fresh orgs per test.
 */

const DISTRIBUTED = [
  'consumer_group_batches',
  'consumer_groups',
  'endpoint_stats',
  'event_dedup',
  'event_types',
  'events',
  'webhook_deliveries',
  'webhook_endpoints',
];
const REFERENCE = ['api_keys', 'orgs'];
const LOCAL_WEBHOOKS = {
  WEBHOOK_ALLOW_HTTP: 'true',
  WEBHOOK_ALLOW_PRIVATE: 'true',
  WEBHOOK_TIMEOUT_MS: '1000',
  WEBHOOK_RETRY_SCHEDULE: '200ms,200ms',
};
const MAX_ENDPOINTS = 5;
const EVENT = { type: 'citus.test', payload: { ok: true } };

const skipReason = citusUnavailable() ?? redisUnavailable();

const fresh = callOnNewConnection;

describe('the server on Citus (coordinator + 2 workers), two nodes sharing it and Redis', {
  skip: skipReason ?? false,
}, () => {
  let citus: TestCitus;
  let redis: TestRedis;
  let nodeA: TestServer;
  let nodeB: TestServer;
  const kit = webhookKit(() => nodeA.url);
  const { receiver, createWebhook, settledDeliveries, closeReceivers } = kit;
  const orgOf = async (endpointId: string) =>
    (await citus.query`select org_id::text as org from webhook_endpoints where id = ${endpointId}`)[0]!.org as string;
  /** The node whose delivery process does not hold the endpoint (delivery_leases is local to the coordinator). */
  const otherNode = async (endpointId: string) =>
    [nodeA, nodeB][
      1 - (await leaseHolder(citus.query, endpointId, [nodeA, nodeB], (pid) => workerPids(pid, 'delivery')))
    ]!;

  before(async () => {
    // Each kept as soon as it is up, so that `after` stops it even when the other failed to start
    // (a Redis left running kept this file's process alive after a Citus start failed in CI).
    const [startedCitus, startedRedis] = await Promise.allSettled([TestCitus.start(), TestRedis.start()]);
    if (startedCitus.status === 'fulfilled') citus = startedCitus.value;
    if (startedRedis.status === 'fulfilled') redis = startedRedis.value;
    for (const started of [startedCitus, startedRedis]) if (started.status === 'rejected') throw started.reason;
    const env = {
      ...LOCAL_WEBHOOKS,
      REDIS_URL: redis.url,
      NODE_COUNT: '2',
      WEBHOOK_MAX_ENDPOINTS_PER_ORG: String(MAX_ENDPOINTS),
      DESTINATION_ALLOWED_HOSTS: '127.0.0.1',
    };
    // One after the other: the first migrates the empty coordinator, the second finds it done.
    nodeA = await TestServer.start({ databaseUrl: citus.url, workers: 2, env });
    nodeB = await TestServer.start({ databaseUrl: citus.url, workers: 2, env });
  });

  after(async () => {
    await closeReceivers();
    await Promise.all([nodeA?.stop(), nodeB?.stop()]);
    await redis?.destroy();
    await citus?.destroy();
  });

  describe('the schema is distributed by org', () => {
    test("events, event_dedup, event_types, webhook_endpoints, webhook_deliveries and the consumer groups' tables are hash-distributed by org_id, in one colocation group, with shards on both workers", async () => {
      const rows = await citus.query`
        select logicalrelid::regclass::text as table_name, partmethod,
               column_to_column_name(logicalrelid, partkey) as distribution_column, colocationid
        from pg_dist_partition where logicalrelid::regclass::text = any(${DISTRIBUTED}::text[])
        order by 1`;
      const found = Object.fromEntries(
        rows.map((row) => [
          row.table_name,
          `${row.partmethod === 'h' ? 'hash' : row.partmethod} by ${row.distribution_column}`,
        ]),
      );
      assert.deepEqual(
        found,
        Object.fromEntries(DISTRIBUTED.map((table) => [table, 'hash by org_id'])),
        'distribution of each table (absent: not distributed)',
      );
      assert.equal(
        new Set(rows.map((row) => row.colocationid)).size,
        1,
        `one colocation group: ${JSON.stringify(rows)}`,
      );
      const placed = await citus.query`
        select distinct nodeport from citus_shards where table_name = 'events'::regclass order by nodeport`;
      assert.deepEqual(
        placed.map((row) => row.nodeport),
        citus.workerPorts,
        'events shards live on both workers',
      );
    });

    test('orgs and api_keys are reference tables', async () => {
      const rows = await citus.query`
        select logicalrelid::regclass::text as table_name, partmethod, repmodel
        from pg_dist_partition where logicalrelid::regclass::text = any(${REFERENCE}::text[]) order by 1`;
      assert.deepEqual(
        rows.map((row) => [
          row.table_name,
          row.partmethod === 'n' && row.repmodel === 't' ? 'reference' : `${row.partmethod}/${row.repmodel}`,
        ]),
        REFERENCE.map((table) => [table, 'reference']),
      );
    });
  });

  test('202 only after commit: each accepted event, single or batch, is readable at once from the other node and counted in the database', async () => {
    const { orgId, key } = await createOrgWithKey(nodeA.url);
    const nodes = [nodeA, nodeB];
    const singles = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const [to, other] = [nodes[i % 2]!, nodes[(i + 1) % 2]!];
        const sent = await fresh(to.url, 'POST', '/v1/events', key, { ...EVENT, payload: { i } });
        assert.equal(sent.status, 202, sent.text);
        const read = await fresh(other.url, 'GET', `/v1/events/${sent.body.id}`, key);
        assert.equal(read.status, 200, `GET right after 202: ${read.text}`);
        assert.deepEqual(read.body.payload, { i });
        const [stored] =
          await citus.query`select count(*)::int as n from events where org_id = ${orgId} and id = ${sent.body.id}`;
        assert.equal(stored!.n, 1);
        return sent.body.id as string;
      }),
    );
    for (let round = 0; round < 4; round++) {
      const [to, other] = [nodes[round % 2]!, nodes[(round + 1) % 2]!];
      const events = Array.from({ length: 50 }, (_, i) => ({ type: 'citus.batch', payload: { round, i } }));
      const sent = await call(to.url, 'POST', '/v1/events/batch', { key, body: { events } });
      assert.equal(sent.status, 200, sent.text);
      assert.equal(sent.body.accepted, 50, sent.text);
      const ids: string[] = sent.body.results.map((result: any) => result.id);
      for (const id of [ids[0], ids[49]])
        assert.equal((await call(other.url, 'GET', `/v1/events/${id}`, { key })).status, 200);
      const [stored] =
        await citus.query`select count(*)::int as n from events where org_id = ${orgId} and id = any(${ids}::uuid[])`;
      assert.equal(stored!.n, 50, `batch ${round}: every accepted item is a row`);
    }
    const [total] = await citus.query`select count(*)::int as n from events where org_id = ${orgId}`;
    assert.equal(total!.n, singles.length + 200);
  });

  test('one dedup_id sent 50 times at once through both nodes stores one event, and everyone gets its id', async () => {
    const { orgId, key } = await createOrgWithKey(nodeA.url);
    const event = { ...EVENT, dedup_id: `race-${Date.now()}` };
    const responses = await Promise.all(
      Array.from({ length: 50 }, (_, i) => fresh(i % 2 ? nodeB.url : nodeA.url, 'POST', '/v1/events', key, event)),
    );
    const statuses = responses.map((response) => response.status);
    assert.equal(statuses.filter((status) => status === 202).length, 1, `one 202: ${statuses}`);
    assert.equal(statuses.filter((status) => status === 200).length, 49, `49 duplicates: ${statuses}`);
    assert.ok(responses.every((response) => response.status === 202 || response.body.status === 'duplicate'));
    const ids = new Set(responses.map((response) => response.body.id));
    assert.equal(ids.size, 1, `every caller gets the one stored id: ${[...ids]}`);
    const [stored] =
      await citus.query`select count(*)::int as n from events where org_id = ${orgId} and dedup_id = ${event.dedup_id}`;
    assert.equal(stored!.n, 1);
    const [dedup] =
      await citus.query`select event_id::text from event_dedup where org_id = ${orgId} and dedup_id = ${event.dedup_id}`;
    assert.equal(dedup?.event_id, [...ids][0]);
  });

  test('a consumer following cursors sees every accepted event while 8 producers ingest through both nodes', {
    timeout: 60_000,
  }, async () => {
    const PRODUCERS = 8;
    const REQUESTS = 24;
    const BATCH_EVERY = 4;
    const BATCH_SIZE = 10;
    const PAGE = 37;
    const orgs = await Promise.all(
      ['no-ack consumer', 'acking consumer'].map(async (name) => ({
        key: (await createOrgWithKey(nodeA.url, { name })).key,
        accepted: new Set<string>(),
      })),
    );

    const produce = (producer: number) =>
      produceMixed(() => (producer % 2 ? nodeB : nodeA).url, orgs, producer, {
        requests: REQUESTS,
        batchEvery: BATCH_EVERY,
        batchSize: BATCH_SIZE,
      });

    let producing = true;
    let failed = false;
    // Org 0's consumer never acks (a skip would be a permanent miss); org 1's acks every page.
    const consume = async (org: (typeof orgs)[number], ack: boolean, base: string) => {
      const seen: string[] = [];
      const distinct = new Set<string>();
      let cursor = '';
      let pages = 0;
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline && !failed) {
        const response = await call(base, 'GET', `/v1/inbox?limit=${PAGE}${cursor ? '&cursor=' + cursor : ''}`, {
          key: org.key,
        });
        assert.equal(response.status, 200, response.text);
        const ids: string[] = response.body.events.map((event: any) => event.id);
        seen.push(...ids);
        for (const id of ids) distinct.add(id);
        pages++;
        cursor = response.body.next_cursor;
        if (ack && ids.length > 0) {
          const acked = await call(base, 'POST', '/v1/ack', { key: org.key, body: { ids } });
          assert.deepEqual(acked.body, { acked: ids.length, not_found: [] });
        }
        if (!response.body.has_more) {
          if (!producing && [...org.accepted].every((id) => distinct.has(id))) break;
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      }
      return { seen, pages };
    };

    const consumers = [consume(orgs[0]!, false, nodeA.url), consume(orgs[1]!, true, nodeB.url)];
    try {
      await Promise.all(Array.from({ length: PRODUCERS }, (_, p) => produce(p)));
    } catch (error) {
      failed = true;
      throw error;
    } finally {
      producing = false;
      if (failed) await Promise.allSettled(consumers);
    }
    const results = await Promise.all(consumers);

    for (const [index, name] of ['no-ack', 'acking'].entries()) {
      const { accepted } = orgs[index]!;
      const { seen, pages } = results[index]!;
      const distinct = new Set(seen);
      const missed = [...accepted].filter((id) => !distinct.has(id));
      const extra = [...distinct].filter((id) => !accepted.has(id));
      const repeats = seen.length - distinct.size;
      assert.equal(
        missed.length,
        0,
        `${name} consumer missed ${missed.length} of ${accepted.size} accepted events (${pages} pages, ${repeats} repeats), e.g. ${missed.slice(0, 3)}`,
      );
      assert.equal(extra.length, 0, `${name} consumer saw ids that never got a 202: ${extra.slice(0, 3)}`);
      assert.ok(accepted.size > 200, `${name}: only ${accepted.size} events were accepted`);
      assert.ok(pages > 5, `${name} consumer read only ${pages} pages: it did not read while producers wrote`);
    }
    // Read again from the start, the no-ack inbox holds exactly the accepted events; the acking one is empty.
    const again = new Set<string>();
    let cursor = '';
    for (;;) {
      const page = await call(nodeB.url, 'GET', `/v1/inbox?limit=1000${cursor ? '&cursor=' + cursor : ''}`, {
        key: orgs[0]!.key,
      });
      for (const event of page.body.events) again.add(event.id);
      cursor = page.body.next_cursor;
      if (!page.body.has_more) break;
    }
    assert.deepEqual([...again].sort(), [...orgs[0]!.accepted].sort());
    assert.deepEqual((await call(nodeA.url, 'GET', '/v1/inbox', { key: orgs[1]!.key })).body.events, []);
  });

  test('consumer groups through both nodes: competing consumers on A and B see every event once while 8 producers ingest; another org sees nothing; seek replays', {
    timeout: 90_000,
  }, async () => {
    const made = await createOrgWithKey(nodeA.url, { name: 'groups on citus' });
    const org = { key: made.key, accepted: new Set<string>() };
    const stranger = await createOrgWithKey(nodeB.url, { name: 'stranger' });
    const created = await call(nodeA.url, 'POST', '/v1/consumer-groups', {
      key: org.key,
      body: { name: 'g', start: 'earliest', visibility_timeout_s: 120 },
    });
    assert.equal(created.status, 201, created.text);
    let producing = true;
    const seen: string[] = [];
    const consume = async (base: string) => {
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline) {
        const received = await call(base, 'POST', '/v1/consumer-groups/g/receive', { key: org.key, body: { max: 23 } });
        assert.equal(received.status, 200, received.text);
        const ids: string[] = received.body.messages.map((message: any) => message.event.id);
        seen.push(...ids);
        if (ids.length > 0) {
          const acked = await call(base, 'POST', '/v1/consumer-groups/g/ack', { key: org.key, body: { ids } });
          assert.deepEqual(acked.body, { acked: ids.length, not_found: [] });
        } else if (
          !producing &&
          (await call(base, 'GET', '/v1/consumer-groups/g', { key: org.key })).body.pending === 0
        ) {
          return;
        } else {
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      }
    };
    const consumers = [consume(nodeA.url), consume(nodeB.url)];
    await Promise.all(
      Array.from({ length: 8 }, (_, p) =>
        produceMixed(() => (p % 2 ? nodeB : nodeA).url, [org], p, { requests: 24, batchEvery: 4, batchSize: 10 }),
      ),
    );
    producing = false;
    await Promise.all(consumers);
    const distinct = new Set(seen);
    assert.equal(seen.length, distinct.size, 'an event was handed out twice');
    assert.deepEqual([...distinct].sort(), [...org.accepted].sort());
    const [left] =
      await citus.query`select count(*)::int as n from consumer_group_batches where org_id = ${made.orgId}`;
    assert.equal(left!.n, 0, 'acked pages left no batch rows behind');

    assert.equal((await call(nodeB.url, 'GET', '/v1/consumer-groups/g', { key: stranger.key })).status, 404);
    const foreign = await call(nodeB.url, 'POST', '/v1/consumer-groups', {
      key: stranger.key,
      body: { name: 'g', start: 'earliest' },
    });
    assert.equal(foreign.status, 201, foreign.text);
    assert.deepEqual(
      (await call(nodeB.url, 'POST', '/v1/consumer-groups/g/receive', { key: stranger.key, body: {} })).body.messages,
      [],
    );

    const seek = await call(nodeB.url, 'POST', '/v1/consumer-groups/g/seek', {
      key: org.key,
      body: { to: 'earliest' },
    });
    assert.equal(seek.status, 200, seek.text);
    assert.equal(seek.body.pending, org.accepted.size);
  });

  test('a long poll on one node is woken by an event posted through the other (over Redis), well before its 2 s re-read', {
    timeout: 60_000,
  }, async () => {
    const { key } = await createOrgWithKey(nodeA.url, { name: 'groups long poll across nodes' });
    const created = await call(nodeA.url, 'POST', '/v1/consumer-groups', { key, body: { name: 'poll' } });
    assert.equal(created.status, 201, created.text);
    const latencies: number[] = [];
    for (let round = 0; round < 5; round++) {
      const waiting = fresh(nodeA.url, 'POST', '/v1/consumer-groups/poll/receive', key, { wait_s: 15 });
      // Long enough for the node's interest to reach the other node's primary over Redis.
      await new Promise((resolve) => setTimeout(resolve, 300));
      const posted = await fresh(nodeB.url, 'POST', '/v1/events', key, { type: 'poll.across', payload: { round } });
      assert.equal(posted.status, 202, posted.text);
      const at = performance.now();
      const answer = await waiting;
      latencies.push(performance.now() - at);
      assert.deepEqual(
        answer.body.messages.map((m: any) => m.event.id),
        [posted.body.id],
      );
      await call(nodeA.url, 'POST', '/v1/consumer-groups/poll/ack', { key, body: { ids: [posted.body.id] } });
    }
    // Without the wake-up over Redis each answer waits for the 2 s re-read (1.7 s after the post
    // here); with it, milliseconds. 1.5 s leaves a loaded machine a wide margin.
    assert.ok(
      Math.max(...latencies) < 1_500,
      `answers came ${latencies.map((ms) => ms.toFixed(0)).join(', ')} ms after the 202`,
    );
  });

  test("ack works, and another org can neither see, read nor ack an org's events", async () => {
    const a = await createOrgWithKey(nodeA.url, { name: 'org a' });
    const b = await createOrgWithKey(nodeA.url, { name: 'org b' });
    const send = async (key: string, owner: string, base: string) => {
      const sent = await call(base, 'POST', '/v1/events', { key, body: { type: 'secret.thing', payload: { owner } } });
      assert.equal(sent.status, 202, sent.text);
      return sent.body.id as string;
    };
    const idsA = [
      await send(a.key, 'a', nodeA.url),
      await send(a.key, 'a', nodeB.url),
      await send(a.key, 'a', nodeA.url),
    ];
    const idB = await send(b.key, 'b', nodeB.url);
    const inbox = async (key: string, base: string) =>
      (await call(base, 'GET', '/v1/inbox?limit=100', { key })).body.events.map((event: any) => event.id);
    await waitFor(
      'both inboxes to show their events',
      async () => (await inbox(a.key, nodeA.url)).length === 3 && (await inbox(b.key, nodeB.url)).length === 1,
      10_000,
    );

    for (const node of [nodeA, nodeB]) {
      assert.deepEqual(await inbox(b.key, node.url), [idB], 'B sees only its own event');
      for (const id of idsA) {
        const read = await call(node.url, 'GET', `/v1/events/${id}`, { key: b.key });
        assert.equal(read.status, 404);
        assert.equal(read.body.error.code, 'not_found');
      }
    }
    const foreignAck = await call(nodeB.url, 'POST', '/v1/ack', { key: b.key, body: { ids: [idsA[0], idB] } });
    assert.deepEqual(foreignAck.body, { acked: 1, not_found: [idsA[0]] });
    assert.equal((await call(nodeA.url, 'DELETE', `/v1/events/${idsA[1]}`, { key: b.key })).status, 404);
    assert.deepEqual((await inbox(a.key, nodeB.url)).sort(), [...idsA].sort(), "nothing B did touched A's events");

    const ack = await call(nodeB.url, 'POST', '/v1/ack', { key: a.key, body: { ids: [idsA[0], idsA[1]] } });
    assert.deepEqual(ack.body, { acked: 2, not_found: [] });
    assert.equal((await call(nodeA.url, 'DELETE', `/v1/events/${idsA[2]}`, { key: a.key })).status, 204);
    assert.deepEqual(await inbox(a.key, nodeA.url), []);
    for (const id of idsA) {
      const read = await call(nodeA.url, 'GET', `/v1/events/${id}`, { key: a.key });
      assert.equal(read.status, 200);
      assert.match(read.body.acked_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    }
    const [stored] =
      await citus.query`select count(*)::int as n from events where org_id = ${a.orgId} and acked_at is not null`;
    assert.equal(stored!.n, 3);
  });

  test('GET /v1/events on Citus: one shard per page (the router plan), walks newest first through both nodes, typed pages, no other org', async () => {
    const a = await createOrgWithKey(nodeA.url, { name: 'list a' });
    const b = await createOrgWithKey(nodeB.url, { name: 'list b' });
    const sent: string[] = [];
    for (const [i, base] of [nodeA.url, nodeB.url, nodeA.url, nodeB.url].entries()) {
      const batch = await call(base, 'POST', '/v1/events/batch', {
        key: a.key,
        body: {
          events: Array.from({ length: 6 }, (_, j) => ({ type: j % 2 ? 'list.odd' : 'list.even', payload: { i, j } })),
        },
      });
      assert.equal(batch.status, 200, batch.text);
      sent.push(...batch.body.results.map((result: { id: string }) => result.id));
    }
    assert.equal(
      (await call(nodeB.url, 'POST', '/v1/events', { key: b.key, body: { type: 'list.odd', payload: {} } })).status,
      202,
    );
    // More pages than the client's prepared statements take to go generic (5), alternating nodes.
    const walk = async (query: string) => {
      const ids: string[] = [];
      let cursor: string | null = null;
      for (let page = 0; page < 100; page++) {
        const base = page % 2 ? nodeB.url : nodeA.url;
        const response: { status: number; text: string; body: any } = await call(
          base,
          'GET',
          `/v1/events?limit=2${query}${cursor ? '&cursor=' + cursor : ''}`,
          {
            key: a.key,
          },
        );
        assert.equal(response.status, 200, response.text);
        ids.push(...response.body.events.map((event: { id: string }) => event.id));
        cursor = response.body.next_cursor;
        if (cursor === null) return ids;
      }
      throw new Error('the walk did not end');
    };
    const all = await walk('');
    assert.deepEqual(all, [...sent].sort().reverse(), 'every event once, newest first');
    assert.deepEqual(
      await walk('&type=list.odd'),
      all.filter((id) => sent.indexOf(id) % 2 === 1),
    );
    assert.equal((await walk('&type=list.*')).length, sent.length);

    const plan =
      await citus.query`explain ${eventListQuery(citus.query as unknown as Sql, { ...parseEventListParams('type=list.odd', Date.now(), 30), orgId: a.orgId, limit: 2 }) as any}`;
    const text = plan.map((row: any) => row['QUERY PLAN']).join('\n');
    assert.match(text, /Task Count: 1\b/, text);
    assert.doesNotMatch(text, /Seq Scan on events/, text);
  });

  test('webhooks from two nodes: each event reaches the endpoint once and every delivery shows succeeded; a filtered endpoint gets only its matches', async () => {
    const TOTAL = 60;
    const { key } = await createOrgWithKey(nodeA.url);
    const hook = await receiver();
    const endpoint = await createWebhook(key, { url: hook.url }, nodeB.url);
    const filteredHook = await receiver();
    const filtered = await createWebhook(
      key,
      { url: filteredHook.url, filter: { 'payload.round': { $in: [1, 3] } } },
      nodeA.url,
    );
    const ids: string[] = [];
    for (let round = 0; round < 4; round++) {
      const at = round % 2 ? nodeB.url : nodeA.url;
      const events = Array.from({ length: TOTAL / 4 - 3 }, (_, i) => ({ type: 'hook.batch', payload: { round, i } }));
      const batch = await call(at, 'POST', '/v1/events/batch', { key, body: { events } });
      assert.equal(batch.status, 200, batch.text);
      ids.push(...batch.body.results.map((result: any) => result.id));
      for (let i = 0; i < 3; i++) {
        const single = await call(at, 'POST', '/v1/events', {
          key,
          body: { type: 'hook.single', payload: { round, i } },
        });
        assert.equal(single.status, 202, single.text);
        ids.push(single.body.id);
      }
    }
    assert.equal(ids.length, TOTAL);
    await waitFor('every event delivered', () => ids.every((id) => hook.ids().has(id)), 20_000, 50);
    await new Promise((resolve) => setTimeout(resolve, 500)); // room for a second send to show up
    const perId = new Map<string, number>();
    for (const request of hook.requests) perId.set(webhookId(request), (perId.get(webhookId(request)) ?? 0) + 1);
    const twice = [...perId].filter(([, n]) => n > 1);
    assert.deepEqual(twice, [], 'no event sent twice');
    assert.equal(hook.requests.length, TOTAL);
    const deliveries = await settledDeliveries(endpoint.id, key, ids, nodeA.url);
    assert.equal(deliveries.length, TOTAL);
    assert.deepEqual(
      deliveries.filter((delivery) => delivery.status !== 'succeeded' || delivery.attempts.length !== 1),
      [],
    );
    // 15 events per round: rounds 1 and 3 match the filter.
    const matching = [...ids.slice(15, 30), ...ids.slice(45, 60)];
    await waitFor(
      'every matching event delivered',
      () => matching.every((id) => filteredHook.ids().has(id)),
      20_000,
      50,
    );
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual([...filteredHook.ids()].sort(), [...matching].sort());
    assert.equal(
      (await call(nodeB.url, 'GET', `/v1/webhooks/${filtered.id}`, { key })).body.filter['payload.round'].$in.length,
      2,
    );
  });

  test('per-endpoint stats on Citus: endpoint_stats rows on the shards, written with the attempts, read through the node that does not deliver', async () => {
    const { key } = await createOrgWithKey(nodeA.url);
    const stranger = await createOrgWithKey(nodeB.url);
    // Odd events' first request fails; every second request succeeds.
    const seen = new Set<string>();
    const hook = await receiver((_n, request) => {
      const id = webhookId(request);
      const first = !seen.has(id);
      seen.add(id);
      return {
        status: first && (JSON.parse(request.body) as { payload: { i: number } }).payload.i % 2 === 1 ? 500 : 200,
      };
    });
    const endpoint = await createWebhook(key, { url: hook.url }, nodeA.url);
    const events = Array.from({ length: 6 }, (_, i) => ({ type: 'citus.stats', payload: { i } }));
    const batch = await call(nodeA.url, 'POST', '/v1/events/batch', { key, body: { events } });
    assert.equal(batch.status, 200, batch.text);
    const ids = batch.body.results.map((result: { id: string }) => result.id);
    const deliveries = await settledDeliveries(endpoint.id, key, ids, nodeA.url);
    assert.equal(deliveries.filter((delivery) => delivery.attempts.length === 2).length, 3);
    const reader = await otherNode(endpoint.id);
    const stats = await call(reader.url, 'GET', `/v1/webhooks/${endpoint.id}/stats?window=15m`, { key });
    assert.equal(stats.status, 200, stats.text);
    assert.equal(stats.body.buckets.length, 15);
    const { succeeded, failed, dead, first_attempts: firstAttempts, lag_ms_avg: lag } = stats.body.totals;
    assert.deepEqual(
      { succeeded, failed, dead, firstAttempts },
      { succeeded: 6, failed: 3, dead: 0, firstAttempts: 6 },
    );
    assert.equal(typeof lag, 'number');
    // The rows are on a worker's shard of the org's colocation group, not on the coordinator.
    const org = await orgOf(endpoint.id);
    const [placed] = await citus.query`
      select count(*)::int as n from endpoint_stats where org_id = ${org} and endpoint_id = ${endpoint.id}`;
    assert.ok(placed!.n >= 1);
    const [shard] = await citus.query`
      select nodeport from citus_shards
      where table_name = 'endpoint_stats'::regclass and shardid = get_shard_id_for_distribution_column('endpoint_stats', ${org}::uuid)`;
    assert.ok(citus.workerPorts.includes(shard!.nodeport as number), JSON.stringify(shard));
    assert.equal(
      (await call(reader.url, 'GET', `/v1/webhooks/${endpoint.id}/stats`, { key: stranger.key })).status,
      404,
    );
    assert.equal((await call(reader.url, 'GET', `/v1/webhooks/${endpoint.id}/stats?window=1d`, { key })).status, 422);
  });

  test('ordering "key" on Citus: the check of sql/012 is on the shards, per-key order holds with a failure, and the open keyed deliveries are read (a join colocated by org)', async () => {
    const { key } = await createOrgWithKey(nodeA.url);
    const status = new Map<ReceivedWebhook, number>();
    let failed = false;
    const hook = await receiver((_n, request) => {
      const failNow = (JSON.parse(request.body) as { payload: { i: number } }).payload.i === 1 && !failed;
      if (failNow) failed = true;
      const answer = failNow ? 500 : 200;
      status.set(request, answer);
      return { status: answer };
    });
    const endpoint = await createWebhook(key, { url: hook.url, ordering: 'key' }, nodeB.url);
    assert.equal(endpoint.ordering, 'key');
    const bad = await call(nodeA.url, 'PATCH', `/v1/webhooks/${endpoint.id}`, { key, body: { ordering: 'lifo' } });
    assert.equal(bad.status, 422, bad.text);
    const keys = Array.from({ length: 12 }, (_, i) => (i % 3 === 2 ? null : i % 3 === 0 ? 'x' : 'y'));
    const ids = await sendKeyed(nodeA.url, key, keys);
    await waitFor('every event delivered', () => ids.every((id) => hook.ids().has(id)), 20_000, 50);
    const byKey = new Map(['x', 'y'].map((k) => [k, ids.filter((_, i) => keys[i] === k)] as const));
    assert.deepEqual(
      keyOrderViolations(hook, byKey, (request) => status.get(request) === 200),
      [],
    );
    await settledDeliveries(endpoint.id, key, ids, nodeA.url);
    // The engine's read of open keyed deliveries, run here against the coordinator: none are open now;
    // a row made failed again (as a recover would leave it pending) is found with its event's key.
    const org = await orgOf(endpoint.id);
    assert.deepEqual(await openKeyedDeliveries(citus.query as unknown as Sql, org, endpoint.id), []);
    await citus.query`update webhook_deliveries set status = 'failed', next_attempt_at = now() + interval '1 hour' where org_id = ${org} and endpoint_id = ${endpoint.id} and event_id = ${ids[3]!}`;
    assert.deepEqual(
      (await openKeyedDeliveries(citus.query as unknown as Sql, org, endpoint.id)).map((row) => row.key),
      ['x'],
    );
    await citus.query`update webhook_deliveries set status = 'succeeded', next_attempt_at = null where org_id = ${org} and endpoint_id = ${endpoint.id} and event_id = ${ids[3]!}`;
  });

  test('a broker destination on Citus: the kind check of sql/013 is on the shards, a redis_stream destination created through A gets every event posted through both nodes once, its config masked and its deliveries listed through B', async () => {
    const { key } = await createOrgWithKey(nodeA.url);
    const created = await call(nodeA.url, 'POST', '/v1/destinations', {
      key,
      body: {
        type: 'redis_stream',
        config: { url: redis.url.replace('redis://', 'redis://:pw-not-shown@'), stream: 'citus:dest' },
      },
    });
    // The test Redis has no password: an AUTH with one fails, so the config is fixed by a PATCH
    // through the other node, which keeps the stream and replaces only the URL.
    assert.equal(created.status, 201, created.text);
    assert.ok(!created.text.includes('pw-not-shown'), 'the password is masked');
    const patched = await call(nodeB.url, 'PATCH', `/v1/destinations/${created.body.id}`, {
      key,
      body: { config: { url: redis.url } },
    });
    assert.equal(patched.status, 200, patched.text);
    assert.equal(patched.body.config.stream, 'citus:dest');
    // Changes apply to deliveries starting more than 1 s after the answer (API.md §5).
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const org = await orgOf(created.body.id);
    await assert.rejects(
      citus.query`update webhook_endpoints set kind = 'kafka' where org_id = ${org} and id = ${created.body.id}`,
      /webhook_endpoints_kind_check/,
    );
    const ids: string[] = [];
    for (const node of [nodeA, nodeB, nodeA, nodeB]) {
      const response = await call(node.url, 'POST', '/v1/events/batch', {
        key,
        body: { events: Array.from({ length: 25 }, (_, i) => ({ type: 'citus.dest', payload: { i } })) },
      });
      assert.equal(response.status, 200, response.text);
      for (const result of response.body.results) ids.push(result.id);
    }
    const client = new Redis(redis.url);
    try {
      let arrived: string[] = [];
      await waitFor(
        'every event in the stream',
        async () => {
          arrived = (await client.xrange('citus:dest', '-', '+')).map(([, fields]) => JSON.parse(fields[1]!).id);
          return new Set(arrived).size >= ids.length;
        },
        20_000,
        100,
      );
      assert.deepEqual(new Set(arrived), new Set(ids));
    } finally {
      client.disconnect();
    }
    await waitFor('every delivery listed through B', async () => {
      const page = await call(
        nodeB.url,
        'GET',
        `/v1/destinations/${created.body.id}/deliveries?limit=250&status=succeeded`,
        { key },
      );
      return page.body.deliveries.length === ids.length;
    });
  });

  test('the console on Citus: GET /v1/key answers through either node (orgs and api_keys are reference tables), a revoked key is 401 there, and /console is served', async () => {
    const { key, keyId, orgId } = await createOrgWithKey(nodeA.url, {
      name: 'console on citus',
      scopes: ['events:read'],
    });
    for (const node of [nodeA, nodeB]) {
      const me = await call(node.url, 'GET', '/v1/key', { key });
      assert.equal(me.status, 200, me.text);
      assert.deepEqual(
        [me.body.id, me.body.org, me.body.scopes],
        [keyId, { id: orgId, name: 'console on citus' }, ['events:read']],
      );
      const page = await fetch(`${node.url}/console`);
      assert.equal(page.status, 200);
      assert.match(page.headers.get('content-security-policy') ?? '', /connect-src 'self'/);
    }
  });

  test('the rate limit is shared by both nodes: a burst of 20 at 2/s admits no more than the bucket holds', async () => {
    const RATE = 2;
    const BURST = 20;
    const { key } = await createOrgWithKey(nodeA.url, { rate_limit_per_sec: RATE, burst: BURST });
    const result = await driveEvents(
      [
        { url: nodeA.url, connections: 4 },
        { url: nodeB.url, connections: 4 },
      ],
      key,
      2_000,
    );
    const summary = `accepted ${result.accepted}, limited ${result.limited}, other ${JSON.stringify(result.other)} in ${result.elapsedMs.toFixed(0)} ms`;
    assert.deepEqual(result.other, {}, summary);
    // The bound grows with the measured window, so a slow machine cannot fail it; a per-node
    // bucket would admit about twice the burst (40 and more). The slack is the credit overshoot
    // docs/MULTI-NODE.md describes (workers admitting on their last report of the bucket before
    // their leases return, repaid later): CI at load 12 saw 29 against 28 with a slack of 4.
    assert.ok(result.accepted <= expectedAccepted(RATE, BURST, result.elapsedMs) + BURST / 2, summary);
    assert.ok(result.accepted >= BURST / 2, `the shared bucket admitted too little: ${summary}`);
    assert.ok(result.limited > result.accepted, `the load exceeded the limit: ${summary}`);
  });

  test('a key revoked through node A is refused by node B, on every worker, within 2 s', async () => {
    const { key, keyId } = await createOrgWithKey(nodeA.url);
    const warm = await Promise.all(Array.from({ length: 8 }, () => fresh(nodeB.url, 'POST', '/v1/events', key, EVENT)));
    assert.deepEqual(
      warm.map((response) => response.status),
      Array(8).fill(202),
    );
    const revoked = await call(nodeA.url, 'DELETE', `/v1/admin/keys/${keyId}`, { admin: true });
    assert.equal(revoked.status, 200, revoked.text);
    const started = performance.now();
    await waitFor(
      'node B to refuse the revoked key on every worker',
      async () => {
        const tries = await Promise.all(
          Array.from({ length: 6 }, () => fresh(nodeB.url, 'POST', '/v1/events', key, EVENT)),
        );
        return tries.every((response) => response.status === 401);
      },
      5_000,
      50,
    );
    const elapsed = performance.now() - started;
    assert.ok(elapsed <= 2000, `revocation reached node B after ${elapsed.toFixed(0)} ms (contract: 2 s)`);
  });

  test('an event type registered through node A is checked by node B within 2 s, single and batch; schema_version and ordering_key are stored on the shards', async () => {
    const { key, orgId } = await createOrgWithKey(nodeA.url);
    const schema = { type: 'object', required: ['amount'], properties: { amount: { type: 'number', minimum: 0 } } };
    // The first schema a process loads pays ajv's import and first compile once (docs/EVENT-TYPES.md;
    // 2.26 s to apply here once at CI load): another org's type takes that out of the measure.
    const other = await createOrgWithKey(nodeA.url);
    assert.equal(
      (await call(nodeA.url, 'PUT', '/v1/event-types/warm.up', { key: other.key, body: { schema } })).status,
      201,
    );
    await waitFor(
      'node B to load its first schema on every worker',
      async () => {
        const tries = await Promise.all(
          Array.from({ length: 6 }, () =>
            fresh(nodeB.url, 'POST', '/v1/events', other.key, { type: 'warm.up', payload: { amount: -1 } }),
          ),
        );
        return tries.every((response) => response.status === 422);
      },
      10_000,
      50,
    );
    const put = await call(nodeA.url, 'PUT', '/v1/event-types/citus.typed', { key, body: { schema } });
    assert.equal(put.status, 201, put.text);
    const started = performance.now();
    await waitFor(
      'node B to refuse a bad payload on every worker',
      async () => {
        const tries = await Promise.all(
          Array.from({ length: 6 }, () =>
            fresh(nodeB.url, 'POST', '/v1/events', key, { type: 'citus.typed', payload: { amount: -1 } }),
          ),
        );
        return tries.every((response) => response.status === 422);
      },
      5_000,
      50,
    );
    const elapsed = performance.now() - started;
    assert.ok(elapsed <= 2000, `the schema reached node B after ${elapsed.toFixed(0)} ms (contract: 2 s)`);
    const good = await fresh(nodeB.url, 'POST', '/v1/events', key, {
      type: 'citus.typed',
      payload: { amount: 3 },
      ordering_key: 'k-1',
    });
    assert.equal(good.status, 202);
    const batch = await call(nodeB.url, 'POST', '/v1/events/batch', {
      key,
      body: {
        events: [
          { type: 'citus.typed', payload: { amount: 'x' } },
          { type: 'citus.typed', payload: { amount: 1 }, dedup_id: 'd-1', ordering_key: 'k-2' },
        ],
      },
    });
    assert.deepEqual(
      batch.body.results.map((result: { status: string }) => result.status),
      ['rejected', 'accepted'],
      batch.text,
    );
    const rows =
      await citus.query`select schema_version, ordering_key from events where org_id = ${orgId} order by ordering_key`;
    assert.deepEqual(
      rows.map((row) => [row.schema_version, row.ordering_key]),
      [
        [1, 'k-1'],
        [1, 'k-2'],
      ],
    );
    const listed = await call(nodeB.url, 'GET', '/v1/event-types', { key });
    assert.equal(listed.body.event_types[0].version, 1);
    assert.equal((await call(nodeB.url, 'DELETE', '/v1/event-types/citus.typed', { key })).status, 204);
  });

  test("an HTTP process's sessions plan with values and write many shards over one connection per worker, on both COPY clients", async () => {
    // Fails the flush unless its session ships multi-shard writes sequentially (src/db/connect.ts).
    const requireSequential = `do $$ begin
      if current_setting('citus.multi_shard_modify_mode') <> 'sequential' then
        raise exception 'citus.multi_shard_modify_mode is %', current_setting('citus.multi_shard_modify_mode');
      end if; end $$`;
    for (const client of ['wire', 'postgres']) {
      const { sql, copyPool } = openHttpDatabase(loadConfig({ INGEST_COPY_CLIENT: client }), citus.url, true);
      try {
        const [settings] =
          await sql`select current_setting('plan_cache_mode') as plans, current_setting('citus.multi_shard_modify_mode') as writes`;
        assert.deepEqual(
          { ...settings },
          { plans: 'force_custom_plan', writes: 'sequential' },
          `${client}: the pool's session`,
        );
        await copyPool.copyFenced(requireSequential, COPY_EVENTS, '');
      } finally {
        copyPool.close();
        await sql.end({ timeout: 1 });
      }
    }
  });

  test("the webhook backlog gauges read on Citus: a paced endpoint's undelivered events show as waiting", async () => {
    const { key } = await createOrgWithKey(nodeA.url);
    const hook = await receiver();
    // One delivery a second: most of the batch waits after the endpoint's cursor.
    const endpoint = await createWebhook(key, { url: hook.url, rate_limit_per_sec: 1 });
    const events = Array.from({ length: 20 }, (_, i) => ({ type: 'hook.paced', payload: { i } }));
    assert.equal((await call(nodeA.url, 'POST', '/v1/events/batch', { key, body: { events } })).status, 200);
    const gauge = (text: string, name: string, labels: string) =>
      Number(new RegExp(`^${name}\\{${labels}\\} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
    let text = '';
    await waitFor(
      'an unsent delivery older than 0 s on /metrics',
      async () => {
        text = await (await fetch(nodeB.url + '/metrics')).text();
        return gauge(text, 'webhook_oldest_waiting_delivery_age_seconds', 'state="unsent",endpoint_health="ok"') > 0;
      },
      20_000,
      500,
    );
    assert.ok(
      gauge(text, 'webhook_endpoints_disabled', 'by="server"') >= 0,
      'webhook_endpoints_disabled is read as well',
    );
    assert.equal((await call(nodeA.url, 'DELETE', `/v1/webhooks/${endpoint.id}`, { key })).status, 204);
  });

  test('rotate-secret through the node that does not deliver: every delivery that starts after its answer carries the new signature', {
    timeout: 90_000,
  }, async () => {
    const { key } = await createOrgWithKey(nodeA.url);
    const hook = await receiver();
    const endpoint = await createWebhook(key, { url: hook.url }, nodeA.url);
    await rotationUnderLoad(kit, {
      key,
      endpointId: endpoint.id,
      hook,
      oldSecret: endpoint.secret,
      sendAt: [nodeA.url, nodeB.url],
      rotateAt: (await otherNode(endpoint.id)).url,
    });
  });

  test('PATCH of the url, disable and delete through the node that does not deliver apply to every delivery starting more than 1 s later', {
    timeout: 90_000,
  }, async () => {
    const { key } = await createOrgWithKey(nodeA.url);
    const hook = await receiver();
    const endpoint = await createWebhook(key, { url: hook.url }, nodeA.url);
    await changesApplyWithinOneSecond(kit, {
      key,
      endpointId: endpoint.id,
      hook,
      sendAt: [nodeA.url, nodeB.url],
      changeAt: (await otherNode(endpoint.id)).url,
    });
  });

  test(`the per-org endpoint cap (${MAX_ENDPOINTS}) holds when 40 creates race through both nodes at cap - 1`, async () => {
    const { key, orgId } = await createOrgWithKey(nodeA.url);
    const create = (at: string) => call(at, 'POST', '/v1/webhooks', { key, body: { url: 'http://127.0.0.1:9/hook' } });
    for (let i = 0; i < MAX_ENDPOINTS - 1; i++) assert.equal((await create(nodeA.url)).status, 201);
    const statuses = (
      await Promise.all(Array.from({ length: 40 }, (_, i) => create(i % 2 ? nodeB.url : nodeA.url)))
    ).map((response) => response.status);
    assert.equal(statuses.filter((status) => status === 201).length, 1, String(statuses));
    assert.equal(statuses.filter((status) => status === 409).length, 39, String(statuses));
    const [row] = await citus.query`select count(*)::int as n from webhook_endpoints where org_id = ${orgId}`;
    assert.equal(row!.n, MAX_ENDPOINTS);
  });

  // Last: background work (delivery leases, retention, partitions) fails only in the logs.
  test('neither node logged an error against Citus', () => {
    const errors = [nodeA, nodeB].flatMap((node) =>
      node.output.split('\n').flatMap((line) => {
        try {
          const entry = JSON.parse(line);
          return entry.level >= 50
            ? [`${entry.role}: ${entry.msg}: ${typeof entry.err === 'string' ? entry.err : entry.err?.message}`]
            : [];
        } catch {
          return [];
        }
      }),
    );
    assert.deepEqual([...new Set(errors)], []);
  });
});
