import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { call, createOrgWithKey } from './helpers/api.js';
import {
  natsUnavailable,
  rabbitMqUnavailable,
  redisUnavailable,
  startEndlessMessageNats,
  startEndlessReplyRedis,
  startNats,
  startRabbitMq,
  startRedis,
  type TestNats,
  type TestRabbitMq,
} from './helpers/brokers.js';
import { randomBytes } from 'node:crypto';
import type { Sql } from '../src/db/connect.js';
import { TestPostgres } from './helpers/postgres.js';
import type { TestRedis } from './helpers/redis.js';
import { TestServer } from './helpers/server.js';
import { expectedSignature, Receiver, waitFor } from './webhooks-receiver.js';

/**
 * Destinations beyond HTTP (API.md §5b) end to end: the real server delivering to a real
 * RabbitMQ, NATS JetStream and Redis, each started by this file on a free loopback port. Every
 * event arrives once with the webhook body and a Standard Webhooks signature that verifies with
 * the destination's secret; a broker that refuses shows why in the attempt log and holds up
 * nothing else. Broker restarts mid-burst: test/destinations-faults.test.ts.
 */

const missing = [rabbitMqUnavailable(), natsUnavailable(), redisUnavailable()].filter((reason) => reason !== null);
const skip = missing.length > 0 ? `brokers missing: ${missing.join('; ')}` : false;

let pg: TestPostgres;
let db: Sql;
let server: TestServer;
let base: string;
let rabbit: TestRabbitMq;
let nats: TestNats;
let redis: TestRedis;
const receivers: Receiver[] = [];

before(async () => {
  if (skip) return;
  pg = await TestPostgres.shared();
  [rabbit, nats, redis] = await Promise.all([startRabbitMq(), startNats({ jetstream: true }), startRedis()]);
  const databaseUrl = await pg.createDatabase('destinations');
  db = pg.connect('destinations');
  server = await TestServer.start({
    databaseUrl,
    workers: 1,
    env: {
      WEBHOOK_ALLOW_HTTP: 'true',
      WEBHOOK_ALLOW_PRIVATE: 'true',
      WEBHOOK_RETRY_SCHEDULE: '300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms',
      WEBHOOK_TIMEOUT_MS: '3000',
      DESTINATION_ALLOWED_HOSTS: '127.0.0.1',
      // Configs and signing secrets are sealed at rest (docs/SECRETS.md).
      SECRETS_KEY: randomBytes(32).toString('base64'),
    },
  });
  base = server.url;
});

after(async () => {
  for (const receiver of receivers) await receiver.close();
  await db?.end({ timeout: 1 });
  await server?.stop();
  await Promise.all([rabbit?.destroy(), nats?.destroy(), redis?.stop()]);
  await pg?.stop();
});

async function createDestination(key: string, body: Record<string, unknown>) {
  const response = await call(base, 'POST', '/v1/destinations', { key, body });
  assert.equal(response.status, 201, response.text);
  return response.body as { id: string; secret: string; config: Record<string, unknown> };
}

/** Posts `count` events of `type` in batches; returns their ids in order. */
async function postEvents(key: string, type: string, count: number, payload = (i: number) => ({ i })) {
  const ids: string[] = [];
  for (let from = 0; from < count; from += 100) {
    const events = Array.from({ length: Math.min(100, count - from) }, (_, n) => ({
      type,
      payload: payload(from + n),
    }));
    const response = await call(base, 'POST', '/v1/events/batch', { key, body: { events } });
    assert.equal(response.status, 200, response.text);
    for (const result of response.body.results) {
      assert.equal(result.status, 'accepted');
      ids.push(result.id);
    }
  }
  return ids;
}

function assertSigned(secret: string, body: string, headers: { id: string; timestamp: string; signature: string }) {
  const expected = expectedSignature(secret, headers.id, headers.timestamp, body);
  assert.ok(headers.signature.split(' ').includes(expected), `signature ${headers.signature} verifies`);
}

async function deliveriesOf(key: string, id: string) {
  const response = await call(base, 'GET', `/v1/destinations/${id}/deliveries?limit=250`, { key });
  assert.equal(response.status, 200, response.text);
  return response.body.deliveries as Array<{
    event_id: string;
    status: string;
    attempts: Array<{ response_status: number | null; error: string | null }>;
  }>;
}

test('rabbitmq: every event is published once, persistent, signed and routed by its type; the confirm is the attempt', {
  skip,
}, async () => {
  const { key } = await createOrgWithKey(base);
  await rabbit.declareExchange('events');
  const queue = await rabbit.declareBoundQueue('events', 'order.#');
  const destination = await createDestination(key, {
    type: 'rabbitmq',
    config: { url: rabbit.url, exchange: 'events' },
    event_types: ['order.*'],
  });
  assert.equal(destination.config.url, rabbit.url.replace('guest:guest', 'guest:****'));
  const ids = await postEvents(key, 'order.paid', 300);
  await postEvents(key, 'user.created', 20); // not this destination's type

  const messages = await rabbit.drainQueue(queue, ids.length);
  await new Promise((resolve) => setTimeout(resolve, 700));
  messages.push(...(await rabbit.drainQueue(queue, 0)));
  assert.equal(messages.length, ids.length, 'each event once');
  const seen = new Set<string>();
  for (const message of messages) {
    const body = message.content.toString();
    const event = JSON.parse(body);
    const headers = message.properties.headers as Record<string, string>;
    assert.equal(message.fields.routingKey, 'order.paid', 'routed by the event type');
    assert.equal(message.properties.deliveryMode, 2, 'persistent');
    assert.equal(message.properties.contentType, 'application/json');
    assert.equal(headers['webhook-id'], event.id);
    assert.equal(event.type, 'order.paid');
    assertSigned(destination.secret, body, {
      id: String(headers['webhook-id']),
      timestamp: String(headers['webhook-timestamp']),
      signature: String(headers['webhook-signature']),
    });
    seen.add(event.id);
  }
  assert.deepEqual(seen, new Set(ids));
  await waitFor('every delivery recorded', async () => (await deliveriesOf(key, destination.id)).length >= 250);
  const recorded = await deliveriesOf(key, destination.id);
  assert.ok(recorded.every((d) => d.status === 'succeeded' && d.attempts[0]!.response_status === null));
  assert.ok(recorded.every((d) => d.attempts[0]!.error === null));
});

test('nats: every event is stored once in the JetStream stream, with the webhook-* headers and a verifying signature', {
  skip,
}, async () => {
  const { key } = await createOrgWithKey(base);
  await nats.addStream('ORDERS', ['orders.>']);
  const destination = await createDestination(key, {
    type: 'nats',
    config: { servers: [nats.url], subject: 'orders.all' },
    filter: { 'payload.i': { $lt: 150 } },
  });
  const ids = await postEvents(key, 'order.paid', 200);
  const wanted = ids.slice(0, 150);
  let stored: Awaited<ReturnType<TestNats['readStream']>> = [];
  await waitFor('150 messages in the stream', async () => {
    stored = await nats.readStream('ORDERS');
    return stored.length >= wanted.length;
  });
  await new Promise((resolve) => setTimeout(resolve, 500));
  stored = await nats.readStream('ORDERS');
  assert.equal(stored.length, wanted.length, 'each matching event once; the filter left the rest out');
  for (const message of stored) {
    const body = new TextDecoder().decode(message.data);
    const event = JSON.parse(body);
    assert.equal(message.subject, 'orders.all');
    assert.equal(message.header.get('webhook-id'), event.id);
    assertSigned(destination.secret, body, {
      id: message.header.get('webhook-id'),
      timestamp: message.header.get('webhook-timestamp'),
      signature: message.header.get('webhook-signature'),
    });
  }
  assert.deepEqual(new Set(stored.map((m) => JSON.parse(new TextDecoder().decode(m.data)).id)), new Set(wanted));
});

test('redis_stream: one XADD per event with the fields body, type and webhook-*; maxlen trims the stream', {
  skip,
}, async () => {
  const { key } = await createOrgWithKey(base);
  const destination = await createDestination(key, {
    type: 'redis_stream',
    config: { url: redis.url, stream: 'triggers:events' },
  });
  const trimmed = await createDestination(key, {
    type: 'redis_stream',
    config: { url: redis.url, stream: 'triggers:recent', maxlen: 10 },
  });
  const ids = await postEvents(key, 'invoice.sent', 250);
  const client = new Redis(redis.url);
  try {
    await waitFor('250 entries', async () => (await client.xlen('triggers:events')) >= ids.length);
    await waitFor('every delivery to the trimmed stream', async () => {
      return (await deliveriesOf(key, trimmed.id)).length >= 250;
    });
    const entries = await client.xrange('triggers:events', '-', '+');
    assert.equal(entries.length, ids.length, 'each event once');
    for (const [, flat] of entries) {
      const fields: Record<string, string> = {};
      for (let i = 0; i < flat.length; i += 2) fields[flat[i]!] = flat[i + 1]!;
      const event = JSON.parse(fields.body!);
      assert.equal(fields.type, 'invoice.sent');
      assert.equal(fields['webhook-id'], event.id);
      assertSigned(destination.secret, fields.body!, {
        id: fields['webhook-id']!,
        timestamp: fields['webhook-timestamp']!,
        signature: fields['webhook-signature']!,
      });
    }
    assert.deepEqual(new Set(entries.map(([, flat]) => JSON.parse(flat[1]!).id)), new Set(ids));
    // MAXLEN ~ trims whole macro nodes: about 10, never all 250.
    assert.ok((await client.xlen('triggers:recent')) < 250, 'maxlen trimmed the stream');
  } finally {
    client.disconnect();
  }
});

test('a broker that refuses (wrong password, missing exchange, no stream) shows why in the attempt log, without the password, and holds up nothing else', {
  skip,
}, async () => {
  const { key } = await createOrgWithKey(base);
  await rabbit.declareExchange('good');
  const queue = await rabbit.declareBoundQueue('good', '#');
  const wrongPassword = await createDestination(key, {
    type: 'rabbitmq',
    config: { url: rabbit.urlWith('guest', 'not-the-password-s3cr3t'), exchange: 'good' },
  });
  const noExchange = await createDestination(key, {
    type: 'rabbitmq',
    config: { url: rabbit.url, exchange: 'no-such-exchange' },
  });
  const noStream = await createDestination(key, {
    type: 'nats',
    config: { servers: [nats.url], subject: 'nobody.listens' },
  });
  const good = await createDestination(key, { type: 'rabbitmq', config: { url: rabbit.url, exchange: 'good' } });
  const hook = await Receiver.start();
  receivers.push(hook);
  const webhook = await call(base, 'POST', '/v1/webhooks', { key, body: { url: hook.url } });
  assert.equal(webhook.status, 201, webhook.text);

  const ids = await postEvents(key, 'thing.happened', 50);
  const arrived = await rabbit.drainQueue(queue, ids.length);
  assert.equal(arrived.length, ids.length, 'the good destination got every event');
  await waitFor('the webhook got every event', () => ids.every((id) => hook.ids().has(id)));

  const reasons = async (id: string) => {
    const deliveries = await deliveriesOf(key, id);
    return deliveries.flatMap((d) => d.attempts.map((a) => a.error ?? ''));
  };
  await waitFor('failed attempts recorded for each refusing destination', async () => {
    for (const id of [wrongPassword.id, noExchange.id, noStream.id]) if ((await reasons(id)).length === 0) return false;
    return true;
  });
  const passwordErrors = await reasons(wrongPassword.id);
  assert.ok(
    passwordErrors.some((e) => /ACCESS_REFUSED|authentication|credentials/i.test(e)),
    passwordErrors[0],
  );
  assert.ok(
    passwordErrors.every((e) => !e.includes('not-the-password-s3cr3t')),
    'the password is never shown',
  );
  const exchangeErrors = await reasons(noExchange.id);
  assert.ok(
    exchangeErrors.some((e) => /no-such-exchange|NOT_FOUND|exchange/i.test(e)),
    exchangeErrors[0],
  );
  const streamErrors = await reasons(noStream.id);
  assert.ok(
    streamErrors.some((e) => /stream|no responders|503/i.test(e)),
    streamErrors[0],
  );
  // At rest: the config is sealed whole (SECRETS_KEY), beside a masked copy; no password anywhere.
  const [stored] =
    await db`select config::text as config, secret from webhook_endpoints where id = ${wrongPassword.id}`;
  assert.ok(!stored!.config.includes('not-the-password-s3cr3t'), 'no password in the stored config');
  assert.match(JSON.parse(stored!.config).sealed, /^sealed:v1:/);
  assert.match(stored!.secret, /^sealed:v1:/);
  // Still enabled: failing is not a reason to disable until WEBHOOK_DISABLE_AFTER_HOURS.
  for (const id of [wrongPassword.id, noExchange.id, noStream.id, good.id]) {
    const view = await call(base, 'GET', `/v1/destinations/${id}`, { key });
    assert.equal(view.body.enabled, true);
    assert.ok(!view.text.includes('not-the-password-s3cr3t'));
  }
});

test('a listed host that floods (a 1 GiB reply to XADD, a 1 GiB message to the NATS inbox): its attempts fail saying so, the delivery process stays up, the good destination gets every event', {
  skip,
}, async () => {
  const { key } = await createOrgWithKey(base);
  const [redisFlood, natsFlood] = await Promise.all([startEndlessReplyRedis(), startEndlessMessageNats()]);
  try {
    const floodingRedis = await createDestination(key, {
      type: 'redis_stream',
      config: { url: `redis://127.0.0.1:${redisFlood.port}`, stream: 'events' },
    });
    const floodingNats = await createDestination(key, {
      type: 'nats',
      config: { servers: [`nats://127.0.0.1:${natsFlood.port}`], subject: 'events.flood' },
    });
    const good = await createDestination(key, {
      type: 'redis_stream',
      config: { url: redis.url, stream: 'beside-flood' },
    });

    const ids = await postEvents(key, 'thing.happened', 20);
    await waitFor('the good destination got every event', async () => {
      const deliveries = await deliveriesOf(key, good.id);
      return deliveries.filter((d) => d.status === 'succeeded').length === ids.length;
    });
    const reasons = async (id: string) =>
      (await deliveriesOf(key, id)).flatMap((d) => d.attempts.map((a) => a.error ?? ''));
    await waitFor('an attempt of each flooding destination cut off at the cap', async () => {
      const [fromRedis, fromNats] = await Promise.all([reasons(floodingRedis.id), reasons(floodingNats.id)]);
      return (
        fromRedis.some((e) => /over 1 MiB without ending a reply/.test(e)) &&
        fromNats.some((e) => /over 1 MiB without a publish settling/.test(e))
      );
    });
    // Each connection was closed near the cap (the keeper reconnects with backoff): the servers
    // got far less than their 64 MiB written, which one uncapped connection would have taken.
    assert.ok(redisFlood.written() < 48 * 1024 * 1024, `redis: ${redisFlood.written()} bytes written`);
    assert.ok(natsFlood.written() < 48 * 1024 * 1024, `nats: ${natsFlood.written()} bytes written`);
    assert.doesNotMatch(server.output, /worker (died|exited)|cannot stay up/);
  } finally {
    await Promise.all([redisFlood.close(), natsFlood.close()]);
  }
});
