import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import type { Sql } from '../src/db/connect.js';
import { call, createOrgWithKey, sendEvent } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { redisUnavailable, TestRedis } from './helpers/redis.js';
import { TestServer } from './helpers/server.js';
import { waitFor } from './webhooks-receiver.js';

/**
 * Which orgs a flush wakes the delivery processes for (src/delivery/endpoint-orgs.ts), watched
 * from outside: with REDIS_URL every wake-up is also published on Redis for other nodes, so a
 * subscriber sees exactly which orgs the real server woke.
 */

const WAKE_CHANNEL = 'triggers:delivery-wake';
const LOCAL = { WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOW_PRIVATE: 'true' };

const skip = redisUnavailable() ?? false;
let pg: TestPostgres;
let redis: TestRedis;
let server: TestServer;
let subscriber: Redis;
let db: Sql;
let wokenOrgs: string[] = [];

before(async () => {
  if (skip) return;
  pg = await TestPostgres.start();
  redis = await TestRedis.start();
  const databaseUrl = await pg.createDatabase('delivery_wakes');
  server = await TestServer.start({ databaseUrl, workers: 2, env: { ...LOCAL, REDIS_URL: redis.url } });
  db = pg.connect('delivery_wakes');
  subscriber = new Redis(redis.url);
  await subscriber.subscribe(WAKE_CHANNEL);
  subscriber.on('message', (_channel: string, text: string) => {
    wokenOrgs.push(...(JSON.parse(text) as { orgs: string[] }).orgs);
  });
});

after(async () => {
  subscriber?.disconnect();
  await db?.end({ timeout: 1 });
  await server?.stop();
  await redis?.destroy();
  await pg?.stop();
});

async function sendEvents(key: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++)
    assert.equal((await sendEvent(server.url, key, { type: 'wake.test', payload: { i } })).status, 202);
}

async function createEndpoint(key: string): Promise<string> {
  const created = await call(server.url, 'POST', '/v1/webhooks', { key, body: { url: 'http://127.0.0.1:9/hook' } });
  assert.equal(created.status, 201, created.text);
  return created.body.id;
}

test('a flush wakes delivery for an org with an endpoint, and not for a firehose org', { skip }, async () => {
  const firehose = await createOrgWithKey(server.url);
  const hooked = await createOrgWithKey(server.url);
  await createEndpoint(hooked.key);
  await sendEvents(firehose.key, 20);
  await sendEvents(hooked.key, 20);
  await waitFor('a wake-up for the org with an endpoint', () => wokenOrgs.includes(hooked.orgId), 10_000, 10);
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(wokenOrgs.includes(firehose.orgId), false, 'the firehose org was never woken');
});

test('an endpoint enabled without a NOTIFY is found by the re-read and its org woken then, with no new event', {
  skip,
}, async () => {
  const { key, orgId } = await createOrgWithKey(server.url);
  const id = await createEndpoint(key);
  const disabled = await call(server.url, 'PATCH', `/v1/webhooks/${id}`, { key, body: { enabled: false } });
  assert.equal(disabled.status, 200, disabled.text);
  await sendEvents(key, 3);
  // Longer than a re-read (5 s): every worker now knows the org has no enabled endpoint.
  await new Promise((resolve) => setTimeout(resolve, 6_000));
  wokenOrgs = [];
  // As if the NOTIFY had been lost: the workers learn it only from their re-read.
  await db`update webhook_endpoints set enabled = true where id = ${id}`;
  await waitFor('the org to be woken once the re-read finds its endpoint', () => wokenOrgs.includes(orgId), 15_000, 20);
});
