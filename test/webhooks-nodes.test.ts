import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createOrgWithKey } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { redisUnavailable, TestRedis } from './helpers/redis.js';
import { TestServer } from './helpers/server.js';
import { workerPids } from './helpers/processes.js';
import { maxInWindow, webhookKit, webhookId } from './helpers/webhook-kit.js';
import { waitFor } from './webhooks-receiver.js';

/**
 * Webhook delivery controls across nodes (API.md §5 "Delivery controls"), black-box: two servers
 * sharing one Postgres and one Redis. rate_limit_per_sec holds for an endpoint fed through both,
 * and events ingested on either node wake the delivery process that holds the endpoint.
 */

const LOCAL = {
  WEBHOOK_ALLOW_HTTP: 'true',
  WEBHOOK_ALLOW_PRIVATE: 'true',
  WEBHOOK_TIMEOUT_MS: '1000',
  WEBHOOK_RETRY_SCHEDULE: '200ms,200ms',
};
const VERBOSE = Boolean(process.env.WEBHOOK_TEST_VERBOSE);

let pg: TestPostgres;
const { receiver, createWebhook, send, sendBatch, settledDeliveries, closeReceivers } = webhookKit(() => {
  throw new Error('every call here names its node');
});

before(async () => {
  pg = await TestPostgres.start();
});

after(async () => {
  await closeReceivers();
  await pg?.stop();
});

describe('rate_limit_per_sec across processes and nodes', { skip: redisUnavailable() ?? false }, () => {
  let redis: TestRedis;
  let nodeA: TestServer;
  let nodeB: TestServer;

  before(async () => {
    redis = await TestRedis.start();
    const databaseUrl = await pg.createDatabase('controls_nodes');
    // A 60 s fallback poll: events ingested on one node reach the other node's delivery
    // processes only through the wake-ups on Redis.
    // The default 10 s webhook timeout: "nothing is sent twice" counts requests, and under load
    // (load average 22, a full run beside other suites) 1 s timed out 21 of 300 quick answers,
    // whose retries were right but not once.
    const env = {
      ...LOCAL,
      REDIS_URL: redis.url,
      NODE_COUNT: '2',
      DELIVERY_WORKERS: '2',
      DELIVERY_POLL_MS: '60000',
      WEBHOOK_TIMEOUT_MS: '10000',
    };
    // One after the other: both migrating an empty database at once is multinode.test.ts's business.
    nodeA = await TestServer.start({ databaseUrl, workers: 1, env });
    nodeB = await TestServer.start({ databaseUrl, workers: 1, env });
  });

  after(async () => {
    await Promise.all([nodeA?.stop(), nodeB?.stop()]);
    await redis?.destroy();
  });

  test('50 per second hold for one endpoint fed through two nodes with two delivery processes each; nothing is sent twice', async () => {
    const RATE = 50;
    const TOTAL = 300;
    const { key } = await createOrgWithKey(nodeA.url);
    const hook = await receiver();
    const endpoint = await createWebhook(key, { url: hook.url, rate_limit_per_sec: RATE }, nodeB.url);
    assert.equal(workerPids(nodeA.proc.pid!, 'delivery').length + workerPids(nodeB.proc.pid!, 'delivery').length, 4);
    const halves = await Promise.all([
      sendBatch(key, TOTAL / 2, 'paced.event', nodeA.url),
      sendBatch(key, TOTAL / 2, 'paced.event', nodeB.url),
    ]);
    const ids = halves.flat();
    await waitFor('every event delivered', () => ids.every((id) => hook.ids().has(id)), 40_000, 100);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(hook.requests.length, TOTAL, 'each event sent once');
    assert.equal(hook.ids().size, TOTAL);

    // The contract: attempts *started* in any one-second window, as the server recorded them.
    const deliveries = await settledDeliveries(endpoint.id, key, ids, nodeA.url);
    assert.equal(deliveries.length, TOTAL);
    assert.ok(deliveries.every((delivery) => delivery.status === 'succeeded' && delivery.attempts.length === 1));
    const startedAt = new Map<string, number>(
      deliveries.map((delivery) => [delivery.event_id, Date.parse(delivery.attempts[0].at)]),
    );
    const bound = Math.floor(RATE * 1.1) + 1;
    const mostStarted = maxInWindow([...startedAt.values()], 1000);
    // What the receiver saw: the same, give or take how unevenly the requests travelled (two
    // attempts started 20 ms apart may arrive together on a busy machine).
    const transit = hook.requests.map((request) => request.at - startedAt.get(webhookId(request))!);
    const spread = Math.max(...transit) - Math.min(...transit);
    const mostArrived = maxInWindow(
      hook.requests.map((request) => request.at),
      1000,
    );
    const span = Math.max(...startedAt.values()) - Math.min(...startedAt.values());
    if (VERBOSE)
      console.log(
        `rate limit: ${mostStarted} started / ${mostArrived} arrived in the busiest second; transit spread ${spread} ms; span ${span} ms`,
      );
    assert.ok(
      mostStarted <= bound,
      `${mostStarted} attempts started within one second (limit ${RATE}/s, at most ${bound})`,
    );
    assert.ok(
      mostArrived <= bound + Math.ceil(spread / (1000 / RATE)),
      `${mostArrived} requests arrived within one second (transit spread ${spread} ms)`,
    );
    // And the limit is not the only thing that was slow: it was actually used (a generous lower bound).
    assert.ok(span >= ((TOTAL - bound) / RATE) * 1000 - 50, `the ${TOTAL} attempts spanned ${span} ms`);
  });
});

test('wake-ups cross nodes: events ingested on either node reach the endpoint within seconds, without a poll', {
  skip: redisUnavailable() ?? false,
}, async () => {
  const redis = await TestRedis.start();
  const databaseUrl = await pg.createDatabase('controls_wake');
  const env = { ...LOCAL, REDIS_URL: redis.url, NODE_COUNT: '2', DELIVERY_POLL_MS: '60000' };
  const nodeA = await TestServer.start({ databaseUrl, workers: 1, env });
  const nodeB = await TestServer.start({ databaseUrl, workers: 1, env });
  try {
    const { key } = await createOrgWithKey(nodeA.url);
    const hook = await receiver();
    await createWebhook(key, { url: hook.url }, nodeA.url);
    // Whichever node's delivery process holds the endpoint, half of these were ingested elsewhere.
    for (let i = 0; i < 10; i++) {
      const at = i % 2 === 0 ? nodeA.url : nodeB.url;
      const { id, acceptedAt } = await send(key, at);
      await waitFor(
        `event ${i} (ingested on node ${i % 2 === 0 ? 'A' : 'B'}) to arrive`,
        () => hook.ids().has(id),
        3_000,
        5,
      );
      if (VERBOSE)
        console.log(
          `cross-node wake: event ${i} arrived ${hook.requests.find((r) => webhookId(r) === id)!.at - acceptedAt} ms after its 202`,
        );
    }
    assert.equal(hook.requests.length, 10, 'each event once');
  } finally {
    await Promise.all([nodeA.stop(), nodeB.stop()]);
    await redis.destroy();
  }
});
