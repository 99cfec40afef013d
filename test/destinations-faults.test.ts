import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { call, createOrgWithKey } from './helpers/api.js';
import {
  natsUnavailable,
  rabbitMqUnavailable,
  redisUnavailable,
  startNats,
  startRabbitMq,
  startRedis,
  type TestNats,
  type TestRabbitMq,
} from './helpers/brokers.js';
import { TestPostgres } from './helpers/postgres.js';
import type { TestRedis } from './helpers/redis.js';
import { TestServer } from './helpers/server.js';
import { waitFor } from './webhooks-receiver.js';

/**
 * A broker restarted in the middle of a burst loses nothing (issue #27): publishes that fail
 * while it is down are failed attempts, retried on the schedule (the destination goes into probe
 * mode meanwhile), and every event the server accepted is in the broker once it is back. At least
 * once: a publish whose confirm was lost in the restart may be stored twice (NATS drops such a
 * duplicate by its Nats-Msg-Id); the count of duplicates is printed, never a failure.
 */

const missing = [rabbitMqUnavailable(), natsUnavailable(), redisUnavailable()].filter((reason) => reason !== null);
const skip = missing.length > 0 ? `brokers missing: ${missing.join('; ')}` : false;

const EVENTS = 2_000;

let pg: TestPostgres;
let server: TestServer;
let base: string;

before(async () => {
  if (skip) return;
  pg = await TestPostgres.shared();
  server = await TestServer.start({
    databaseUrl: await pg.createDatabase('destinations_faults'),
    workers: 1,
    env: {
      WEBHOOK_RETRY_SCHEDULE: Array(20).fill('500ms').join(','),
      WEBHOOK_TIMEOUT_MS: '3000',
      DESTINATION_ALLOWED_HOSTS: '127.0.0.1',
    },
  });
  base = server.url;
});

after(async () => {
  await server?.stop();
  await pg?.stop();
});

/**
 * Posts EVENTS events in batches of 100 and restarts the broker once a third are in: stopped,
 * down for 1.5 s while the posting goes on, started again with its data. Returns the accepted ids.
 */
async function burstAcrossRestart(key: string, broker: { stop(): Promise<void>; restart(): Promise<void> }) {
  const ids: string[] = [];
  let restart: Promise<void> | null = null;
  for (let from = 0; from < EVENTS; from += 100) {
    const events = Array.from({ length: 100 }, (_, n) => ({ type: 'order.paid', payload: { n: from + n } }));
    const response = await call(base, 'POST', '/v1/events/batch', { key, body: { events } });
    assert.equal(response.status, 200, response.text);
    for (const result of response.body.results) ids.push(result.id);
    if (restart === null && from >= EVENTS / 3) {
      restart = (async () => {
        await broker.stop();
        await new Promise((resolve) => setTimeout(resolve, 1_500));
        await broker.restart();
      })();
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  await restart;
  return ids;
}

function assertEveryOnce(what: string, ids: readonly string[], arrived: readonly string[]) {
  const got = new Set(arrived);
  const lost = ids.filter((id) => !got.has(id));
  assert.deepEqual(lost, [], `${what}: no accepted event lost`);
  const duplicates = arrived.length - got.size;
  console.log(`# ${what}: ${ids.length} events, ${arrived.length} messages, ${duplicates} duplicates`);
}

/** Attempts with an error over every delivery of a destination (all pages). */
async function failedAttempts(key: string, id: string): Promise<number> {
  let failed = 0;
  let cursor = '';
  do {
    const response = await call(base, 'GET', `/v1/destinations/${id}/deliveries?limit=250&cursor=${cursor}`, { key });
    assert.equal(response.status, 200, response.text);
    for (const delivery of response.body.deliveries as Array<{ attempts: Array<{ error: string | null }> }>)
      failed += delivery.attempts.filter((a) => a.error !== null).length;
    cursor = response.body.next_cursor ?? '';
  } while (cursor !== '');
  return failed;
}

test('rabbitmq restarted mid-burst: every accepted event is in the durable queue afterwards', { skip }, async () => {
  const rabbit: TestRabbitMq = await startRabbitMq();
  try {
    const { key } = await createOrgWithKey(base);
    const queue = await rabbit.declareBoundQueue('orders');
    const created = await call(base, 'POST', '/v1/destinations', {
      key,
      body: { type: 'rabbitmq', config: { url: rabbit.url, exchange: 'orders' } },
    });
    assert.equal(created.status, 201, created.text);
    const ids = await burstAcrossRestart(key, rabbit);
    const arrived: string[] = [];
    await waitFor(
      'every event in the queue',
      async () => {
        for (const message of await rabbit.drainQueue(queue, 0))
          arrived.push(JSON.parse(message.content.toString()).id);
        return new Set(arrived).size >= ids.length;
      },
      90_000,
      500,
    );
    assertEveryOnce('rabbitmq', ids, arrived);
    assert.ok((await failedAttempts(key, created.body.id)) > 0, 'the outage shows as failed attempts');
  } finally {
    await rabbit.destroy();
  }
});

test('nats restarted mid-burst: every accepted event is in the JetStream stream afterwards', { skip }, async () => {
  const nats: TestNats = await startNats({ jetstream: true });
  try {
    const { key } = await createOrgWithKey(base);
    await nats.addStream('ORDERS', ['orders.>']);
    const created = await call(base, 'POST', '/v1/destinations', {
      key,
      body: { type: 'nats', config: { servers: [nats.url], subject: 'orders.paid' } },
    });
    assert.equal(created.status, 201, created.text);
    const ids = await burstAcrossRestart(key, nats);
    let arrived: string[] = [];
    await waitFor(
      'every event in the stream',
      async () => {
        arrived = (await nats.readStream('ORDERS')).map((m) => JSON.parse(new TextDecoder().decode(m.data)).id);
        return new Set(arrived).size >= ids.length;
      },
      90_000,
      1_000,
    );
    assertEveryOnce('nats', ids, arrived);
    assert.ok((await failedAttempts(key, created.body.id)) > 0, 'the outage shows as failed attempts');
  } finally {
    await nats.destroy();
  }
});

test('redis restarted mid-burst: every accepted event is in the stream afterwards', { skip }, async () => {
  const redis: TestRedis = await startRedis();
  const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  client.on('error', () => {});
  try {
    const { key } = await createOrgWithKey(base);
    const created = await call(base, 'POST', '/v1/destinations', {
      key,
      body: { type: 'redis_stream', config: { url: redis.url, stream: 'orders' } },
    });
    assert.equal(created.status, 201, created.text);
    const ids = await burstAcrossRestart(key, redis);
    let arrived: string[] = [];
    await waitFor(
      'every event in the stream',
      async () => {
        try {
          arrived = (await client.xrange('orders', '-', '+')).map(([, fields]) => JSON.parse(fields[1]!).id);
        } catch {
          return false;
        }
        return new Set(arrived).size >= ids.length;
      },
      90_000,
      500,
    );
    assertEveryOnce('redis', ids, arrived);
    assert.ok((await failedAttempts(key, created.body.id)) > 0, 'the outage shows as failed attempts');
  } finally {
    client.disconnect();
    await redis.stop();
  }
});
