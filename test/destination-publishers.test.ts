import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import type { OutgoingMessage, SendOutcome } from '../src/delivery/transport.js';
import { createPublisher, type Destination, type Publisher } from '../src/destinations/publisher.js';
import {
  natsUnavailable,
  rabbitMqUnavailable,
  redisUnavailable,
  startNats,
  startRabbitMq,
  startRedis,
  startEndlessMessageNats,
  startEndlessReplyRedis,
  type FloodingServer,
  type TestNats,
  type TestRabbitMq,
} from './helpers/brokers.js';
import type { TestRedis } from './helpers/redis.js';

/**
 * The broker publishers (src/destinations/, API.md §5b) against real brokers, through
 * createPublisher only: what arrives, many publishes in flight, a broker that stops, comes back,
 * hangs or refuses, and close(). No error text may carry a password or credentials.
 */

const TIMEOUT_MS = 4000;
/** A bound a publish must settle within, whatever happens: its timeout, and room for a loaded machine. */
const SETTLE_BOUND_MS = TIMEOUT_MS + 3000;
const PASSWORD = 'Sup3r-Secret-Pa55';
const WRONG_PASSWORD = 'Wr0ng-Secret-Pa55';

let sequence = 0;
function message(eventType = 'user.created'): OutgoingMessage {
  const eventId = `evt_test${String(++sequence).padStart(8, '0')}`;
  const body = JSON.stringify({
    id: eventId,
    type: eventType,
    payload: { n: sequence },
    occurred_at: '2026-12-05T08:00:00.000Z',
    received_at: '2026-12-05T08:00:00.001Z',
  });
  return {
    eventId,
    eventType,
    headers: {
      'webhook-id': eventId,
      'webhook-timestamp': '1796457600',
      'webhook-signature': `v1,sig-of-${eventId}`,
    },
    body,
  };
}

async function publishAll(publisher: Publisher, messages: OutgoingMessage[]): Promise<SendOutcome[]> {
  return Promise.all(messages.map((m) => publisher.publish(m)));
}

function assertAllOk(outcomes: SendOutcome[]): void {
  const failed = outcomes.filter((o) => !o.ok);
  assert.equal(failed.length, 0, `failed: ${failed.length}, first: ${failed[0]?.error}`);
}

/** A failure whose error says `expected`, settled within the bound, with no secret in it. */
function assertFailure(outcome: SendOutcome, expected: RegExp, secrets: string[] = [PASSWORD, WRONG_PASSWORD]): void {
  assert.equal(outcome.ok, false, 'expected a failed outcome');
  assert.equal(outcome.status, null);
  assert.ok(outcome.error, 'a failure says why');
  assert.match(outcome.error, expected);
  for (const secret of secrets) assert.ok(!outcome.error.includes(secret), `secret in error: ${outcome.error}`);
  assert.ok(outcome.latencyMs <= SETTLE_BOUND_MS, `settled after ${outcome.latencyMs} ms`);
}

/** Publishes one message every 100 ms until one succeeds (the broker is back and the publisher reconnected). */
async function publishUntilOk(publisher: Publisher, deadlineMs: number): Promise<{ failures: SendOutcome[] }> {
  const failures: SendOutcome[] = [];
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const outcome = await publisher.publish(message());
    if (outcome.ok) return { failures };
    failures.push(outcome);
    if (Date.now() > deadline) assert.fail(`no publish succeeded within ${deadlineMs} ms; last: ${outcome.error}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * The broker stops: publishes fail with a reason, each within the timeout, most at once (between
 * reconnect tries); it comes back: publishes succeed again on a new connection.
 */
async function checkOutageAndRecovery(
  publisher: Publisher,
  broker: { stop(): Promise<void>; restart(): Promise<void> },
): Promise<void> {
  assertAllOk(await publishAll(publisher, [message(), message()]));
  await broker.stop();
  const during: SendOutcome[] = [];
  for (let i = 0; i < 20; i++) {
    during.push(await publisher.publish(message()));
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  for (const outcome of during) assertFailure(outcome, /connection|ECONNREFUSED|closed|refused/i);
  const instant = during.filter((o) => o.latencyMs < 1000).length;
  assert.ok(instant >= 15, `publishes while the broker is down fail fast (${instant} of 20 under 1 s)`);
  await broker.restart();
  const { failures } = await publishUntilOk(publisher, 60_000);
  for (const outcome of failures) assertFailure(outcome, /./);
  assertAllOk(await publishAll(publisher, [message(), message(), message()]));
}

/** close() with publishes in flight: every one settles at once, the unconfirmed as 'closed'; later ones too. */
async function checkCloseSettlesInFlight(publisher: Publisher): Promise<void> {
  assertAllOk(await publishAll(publisher, [message()])); // connected
  const inFlight = Array.from({ length: 500 }, () => publisher.publish(message()));
  const closing = publisher.close();
  const started = Date.now();
  const outcomes = await Promise.all(inFlight);
  assert.ok(Date.now() - started < TIMEOUT_MS, 'in-flight publishes settle at close, not at their timeout');
  await closing;
  for (const outcome of outcomes) if (!outcome.ok) assert.equal(outcome.error, 'closed');
  const late = await publisher.publish(message());
  assert.equal(late.ok, false);
  assert.equal(late.error, 'closed');
}

/** A TCP server that accepts connections and never answers: a broker that hangs before its handshake. */
async function startBlackHole(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * A TCP proxy to `port` whose freeze() makes the connections open so far go silent both ways (a
 * partition nobody closes), while new connections pass.
 */
async function startFreezableProxy(port: number): Promise<{ port: number; freeze(): void; close(): Promise<void> }> {
  const pairs = new Set<[net.Socket, net.Socket]>();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    const pair: [net.Socket, net.Socket] = [client, upstream];
    pairs.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    for (const socket of pair) {
      socket.on('error', () => {});
      socket.on('close', () => {
        client.destroy();
        upstream.destroy();
        pairs.delete(pair);
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    freeze: () => {
      for (const [client, upstream] of pairs) {
        client.unpipe(upstream);
        upstream.unpipe(client);
        client.pause();
        upstream.pause();
      }
      pairs.clear();
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Connecting to a broker that never answers: the publish fails within its timeout, saying so. */
async function checkHungHandshake(destination: (port: number) => Destination): Promise<void> {
  const hole = await startBlackHole();
  const publisher = createPublisher(destination(hole.port), { timeoutMs: 1500 });
  try {
    const outcome = await publisher.publish(message());
    assertFailure(outcome, /within 1500 ms|timeout|timed out/i);
    assert.ok(outcome.latencyMs >= 1000, `failed after ${outcome.latencyMs} ms: by the timeout`);
    // Between tries, the next publish fails at once with the same reason.
    const next = await publisher.publish(message());
    assertFailure(next, /within 1500 ms|timeout|timed out/i);
  } finally {
    await publisher.close();
    await hole.close();
  }
}

// ---------------------------------------------------------------------------------------------
const skipRabbit = rabbitMqUnavailable() ?? false;

describe('rabbitmq', { skip: skipRabbit }, () => {
  let broker: TestRabbitMq;
  const publishers: Publisher[] = [];
  const rabbit = (exchange: string, extra: { url?: string; routing_key?: string } = {}): Publisher => {
    const publisher = createPublisher(
      { type: 'rabbitmq', config: { url: extra.url ?? broker.url, exchange, routing_key: extra.routing_key } },
      { timeoutMs: TIMEOUT_MS },
    );
    publishers.push(publisher);
    return publisher;
  };

  before(async () => {
    broker = await startRabbitMq();
    console.log(`rabbitmq-server booted in ${broker.bootMs} ms`);
  });
  after(async () => {
    for (const publisher of publishers) await publisher.close();
    await broker?.destroy();
  });

  test('every message arrives once, persistent, with its body, type, message id and the webhook-* headers', async () => {
    const queue = await broker.declareBoundQueue('events');
    const publisher = rabbit('events');
    const sent = Array.from({ length: 20 }, (_, i) => message(i % 2 ? 'user.created' : 'order.paid'));
    assertAllOk(await publishAll(publisher, sent));
    const received = await broker.drainQueue(queue, sent.length);
    assert.equal(received.length, sent.length);
    const byId = new Map(received.map((m) => [m.properties.messageId as string, m]));
    assert.equal(byId.size, sent.length, 'each message once');
    for (const m of sent) {
      const got = byId.get(m.eventId)!;
      assert.equal(got.content.toString(), m.body);
      assert.equal(got.properties.type, m.eventType);
      assert.equal(got.properties.contentType, 'application/json');
      assert.equal(got.properties.deliveryMode, 2, 'persistent');
      assert.equal(got.fields.routingKey, m.eventType, 'routing key defaults to the event type');
      for (const name of ['webhook-id', 'webhook-timestamp', 'webhook-signature']) {
        assert.equal(got.properties.headers?.[name], m.headers[name]);
      }
    }
  });

  test('a configured routing key replaces the event type', async () => {
    const queue = await broker.declareBoundQueue('keyed', 'fixed.key', 'direct');
    const publisher = rabbit('keyed', { routing_key: 'fixed.key' });
    assertAllOk(await publishAll(publisher, [message('a.b'), message('c.d')]));
    assert.equal((await broker.drainQueue(queue, 2)).length, 2);
  });

  test('2 000 concurrent publishes on one channel are all confirmed and all stored', async () => {
    const queue = await broker.declareBoundQueue('burst');
    const publisher = rabbit('burst');
    const outcomes = await publishAll(
      publisher,
      Array.from({ length: 2000 }, () => message()),
    );
    assertAllOk(outcomes);
    const received = await broker.drainQueue(queue, 2000);
    assert.equal(new Set(received.map((m) => m.properties.messageId)).size, 2000);
  });

  test('wrong credentials: "authentication failed", never the password', async () => {
    const publisher = rabbit('events', { url: broker.urlWith('guest', WRONG_PASSWORD) });
    const first = await publisher.publish(message());
    assertFailure(first, /authentication failed/);
    assertFailure(await publisher.publish(message()), /authentication failed/);
  });

  test('a missing exchange fails saying so; once it exists, the next publish succeeds on a new channel', async () => {
    const publisher = rabbit('not-yet');
    const outcomes = await publishAll(publisher, [message(), message(), message()]);
    for (const outcome of outcomes) assertFailure(outcome, /exchange 'not-yet' not found/);
    const queue = await broker.declareBoundQueue('not-yet');
    assertAllOk(await publishAll(publisher, [message()]));
    assert.equal((await broker.drainQueue(queue, 1)).length, 1);
  });

  test('a message the exchange routes to no queue is a failure ("unroutable"), not a silent loss', async () => {
    await broker.declareExchange('nowhere');
    const publisher = rabbit('nowhere');
    const outcomes = await publishAll(publisher, [message(), message()]);
    for (const outcome of outcomes) assertFailure(outcome, /^unroutable: NO_ROUTE/);
    // Routable messages on the same channel still succeed.
    const queue = await broker.declareBoundQueue('nowhere', 'only.this');
    const [routed, unrouted] = await publishAll(publisher, [message('only.this'), message('other')]);
    assert.equal(routed!.ok, true, routed!.error ?? '');
    assertFailure(unrouted!, /^unroutable/);
    assert.equal((await broker.drainQueue(queue, 1)).length, 1);
  });

  test('a broker that does not answer the handshake: the publish fails within its timeout', async () => {
    await checkHungHandshake((port) => ({
      type: 'rabbitmq',
      config: { url: `amqp://guest:${PASSWORD}@127.0.0.1:${port}`, exchange: 'events' },
    }));
  });

  test('close() settles the publishes in flight at once', async () => {
    await broker.declareBoundQueue('closing');
    await checkCloseSettlesInFlight(rabbit('closing'));
  });

  // Last: it restarts the broker.
  test('broker stopped: publishes fail fast with the reason; restarted: they succeed again', async () => {
    const queue = await broker.declareBoundQueue('outage');
    const publisher = rabbit('outage');
    await checkOutageAndRecovery(publisher, broker);
    console.log(`rabbitmq-server restarted in ${broker.bootMs} ms`);
    // The durable queue kept what was confirmed before the stop.
    assert.ok((await broker.drainQueue(queue, 5)).length >= 5);
  });
});

// ---------------------------------------------------------------------------------------------
const skipNats = natsUnavailable() ?? false;

describe('nats', { skip: skipNats }, () => {
  let broker: TestNats;
  const publishers: Publisher[] = [];
  const serverUrl = (password = PASSWORD): string => broker.url.replace('nats://', `nats://app:${password}@`);
  const nats = (subject: string, config: { servers?: string[]; credentials?: string } = {}): Publisher => {
    const publisher = createPublisher(
      { type: 'nats', config: { servers: config.servers ?? [serverUrl()], subject, credentials: config.credentials } },
      { timeoutMs: TIMEOUT_MS },
    );
    publishers.push(publisher);
    return publisher;
  };

  before(async () => {
    broker = await startNats({ jetstream: true, user: 'app', pass: PASSWORD });
    console.log(`nats-server booted in ${broker.bootMs} ms`);
    await broker.addStream('EVENTS', ['events.>']);
  });
  after(async () => {
    for (const publisher of publishers) await publisher.close();
    await broker?.destroy();
  });

  test('every message is stored once with its body and the webhook-*, type and content-type headers (user:pass in the URL)', async () => {
    await broker.addStream('ONCE', ['once.>']);
    const publisher = nats('once.events');
    const sent = Array.from({ length: 20 }, () => message());
    assertAllOk(await publishAll(publisher, sent));
    const stored = await broker.readStream('ONCE');
    assert.equal(stored.length, sent.length);
    const byId = new Map(stored.map((m) => [m.header.get('webhook-id'), m]));
    for (const m of sent) {
      const got = byId.get(m.eventId)!;
      assert.ok(got, `stored ${m.eventId}`);
      assert.equal(Buffer.from(got.data).toString(), m.body);
      assert.equal(got.header.get('type'), m.eventType);
      assert.equal(got.header.get('content-type'), 'application/json');
      assert.equal(got.header.get('Nats-Msg-Id'), m.eventId);
      for (const name of ['webhook-id', 'webhook-timestamp', 'webhook-signature']) {
        assert.equal(got.header.get(name), m.headers[name]);
      }
    }
  });

  test('the same event published twice is stored once (msgID: JetStream drops the duplicate)', async () => {
    await broker.addStream('DEDUP', ['dedup.>']);
    const publisher = nats('dedup.events');
    const once = message();
    assertAllOk(await publishAll(publisher, [once]));
    assertAllOk(await publishAll(publisher, [once])); // a retry after a lost ack: still a success
    assert.equal((await broker.readStream('DEDUP')).length, 1);
  });

  test('2 000 concurrent publishes are all acked and all stored', async () => {
    await broker.addStream('BURST', ['burst.>']);
    const publisher = nats('burst.events');
    assertAllOk(
      await publishAll(
        publisher,
        Array.from({ length: 2000 }, () => message()),
      ),
    );
    const nc = await broker.connect();
    try {
      const info = await (await nc.jetstreamManager()).streams.info('BURST');
      assert.equal(info.state.messages, 2000);
    } finally {
      await nc.close();
    }
  });

  test('several servers: the first that answers is used', async () => {
    const publisher = nats('events.multi', { servers: ['nats://127.0.0.1:1', serverUrl()] });
    assertAllOk(await publishAll(publisher, [message()]));
  });

  test('a value NATS refuses in a header (CR/LF in the event type): a failed outcome, never a throw', async () => {
    const publisher = nats('events.bad');
    const outcome = await publisher.publish(message('bad\r\ntype'));
    assertFailure(outcome, /BAD_HEADER/);
    assertAllOk(await publishAll(publisher, [message()]));
  });

  test('no stream for the subject: a failure saying so', async () => {
    const outcome = await nats('nostream.events').publish(message());
    assertFailure(outcome, /no JetStream stream for subject 'nostream\.events'/);
  });

  test('wrong password in the server URL: "authentication failed", never the password', async () => {
    const publisher = nats('events.x', { servers: [serverUrl(WRONG_PASSWORD)] });
    assertFailure(await publisher.publish(message()), /authentication failed/);
    assertFailure(await publisher.publish(message()), /authentication failed/);
  });

  test('malformed credentials text: a failure, and no part of the text in it', async () => {
    const secretJwt = 'eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.SECRETJWTPAYLOADSECRETJWTPAYLOAD';
    const secretSeed = 'SUAMSECRETSEEDSECRETSEEDSECRETSEEDSECRETSEEDSECRETSEED';
    const credentials = `-----BEGIN NATS USER JWT-----\n${secretJwt}\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n${secretSeed}\n------END USER NKEY SEED------\n`;
    const publisher = nats('events.x', { servers: [broker.url], credentials });
    const outcome = await publisher.publish(message());
    assertFailure(outcome, /./, [PASSWORD, secretJwt, secretSeed, 'SECRETJWT', 'SECRETSEED']);
  });

  test('a server that hangs (SIGSTOP) with publishes in flight: each fails by its timeout; resumed, publishing works', async () => {
    await broker.addStream('HANG', ['hang.>']);
    const publisher = nats('hang.events');
    assertAllOk(await publishAll(publisher, [message()]));
    broker.pause();
    let outcomes: SendOutcome[];
    try {
      outcomes = await publishAll(
        publisher,
        Array.from({ length: 50 }, () => message()),
      );
    } finally {
      broker.resume();
    }
    // Each by its deadline; a connection that answers nothing for a whole timeout is given up, and
    // the publishes still on it fail with it.
    for (const outcome of outcomes) {
      assertFailure(outcome, /^timeout: no JetStream ack within 4000 ms$|^connection lost: no answer within 4000 ms$/);
    }
    await publishUntilOk(publisher, 30_000);
  });

  test('a broker that does not answer the handshake: the publish fails within its timeout', async () => {
    await checkHungHandshake((port) => ({
      type: 'nats',
      config: { servers: [`nats://app:${PASSWORD}@127.0.0.1:${port}`], subject: 'events.x' },
    }));
  });

  test('close() settles the publishes in flight at once', async () => {
    await broker.addStream('CLOSING', ['closing.>']);
    await checkCloseSettlesInFlight(nats('closing.events'));
  });

  test('broker stopped: publishes fail fast with the reason; restarted: they succeed again, the stream kept', async () => {
    await broker.addStream('OUTAGE', ['outage.>']);
    const publisher = nats('outage.events');
    await checkOutageAndRecovery(publisher, broker);
    assert.ok((await broker.readStream('OUTAGE')).length >= 5);
  });
});

// ---------------------------------------------------------------------------------------------
/** A publish to a flooding server fails with `expected` once the client has cut it off at its cap. */
async function checkFloodCutOff(
  start: () => Promise<FloodingServer>,
  destination: (port: number) => Destination,
  expected: RegExp,
): Promise<void> {
  const hostile = await start();
  const publisher = createPublisher(destination(hostile.port), { timeoutMs: TIMEOUT_MS });
  try {
    assertFailure(await publisher.publish(message()), expected);
    // What the server got written before the close: the cap and the sockets' buffers, not 64 MiB.
    assert.ok(hostile.written() < 16 * 1024 * 1024, `${hostile.written()} bytes written before the close`);
  } finally {
    await publisher.close();
    await hostile.close();
  }
}

test('redis_stream: a server announcing a 1 GiB reply is cut off after 1 MiB; the publish fails saying so', async () => {
  await checkFloodCutOff(
    startEndlessReplyRedis,
    (port) => ({ type: 'redis_stream', config: { url: `redis://127.0.0.1:${port}`, stream: 'events' } }),
    /connection lost: the server sent over 1 MiB without ending a reply/,
  );
});

test('nats: a server announcing a 1 GiB message to the reply inbox is cut off after 1 MiB; the publish fails saying so', async () => {
  await checkFloodCutOff(
    startEndlessMessageNats,
    (port) => ({ type: 'nats', config: { servers: [`nats://127.0.0.1:${port}`], subject: 'events.x' } }),
    /connection lost: the server sent over 1 MiB without a publish settling/,
  );
});

const skipRedis = redisUnavailable() ?? false;

describe('redis_stream', { skip: skipRedis }, () => {
  let broker: TestRedis;
  let client: Redis;
  const publishers: Publisher[] = [];
  const authedUrl = (password = PASSWORD): string => broker.url.replace('redis://', `redis://:${password}@`);
  const redis = (stream: string, config: { url?: string; maxlen?: number } = {}): Publisher => {
    const publisher = createPublisher(
      { type: 'redis_stream', config: { url: config.url ?? authedUrl(), stream, maxlen: config.maxlen } },
      { timeoutMs: TIMEOUT_MS },
    );
    publishers.push(publisher);
    return publisher;
  };

  before(async () => {
    broker = await startRedis({ password: PASSWORD });
    client = new Redis(authedUrl(), { lazyConnect: true });
    client.on('error', () => {});
    await client.connect();
  });
  after(async () => {
    for (const publisher of publishers) await publisher.close();
    client?.disconnect();
    await broker?.destroy();
  });

  test('one XADD per message with the fields body, type and the webhook-* values', async () => {
    const publisher = redis('events');
    const sent = Array.from({ length: 20 }, () => message());
    assertAllOk(await publishAll(publisher, sent));
    const entries = await client.xrange('events', '-', '+');
    assert.equal(entries.length, sent.length);
    const byId = new Map(
      entries.map(([, fields]) => {
        const record: Record<string, string> = {};
        for (let i = 0; i < fields.length; i += 2) record[fields[i]!] = fields[i + 1]!;
        return [record['webhook-id'], record];
      }),
    );
    for (const m of sent) {
      const got = byId.get(m.eventId)!;
      assert.deepEqual(got, {
        body: m.body,
        type: m.eventType,
        'webhook-id': m.eventId,
        'webhook-timestamp': m.headers['webhook-timestamp'],
        'webhook-signature': m.headers['webhook-signature'],
      });
    }
  });

  test('2 000 concurrent publishes all get their entry id', async () => {
    const publisher = redis('burst');
    assertAllOk(
      await publishAll(
        publisher,
        Array.from({ length: 2000 }, () => message()),
      ),
    );
    assert.equal(await client.xlen('burst'), 2000);
  });

  test('maxlen trims the stream (MAXLEN ~)', async () => {
    const publisher = redis('trimmed', { maxlen: 100 });
    assertAllOk(
      await publishAll(
        publisher,
        Array.from({ length: 1000 }, () => message()),
      ),
    );
    const length = await client.xlen('trimmed');
    assert.ok(length >= 100 && length < 1000, `length ${length}`);
  });

  test('a key of another type: the WRONGTYPE reply is the failure', async () => {
    await client.set('not-a-stream', 'x');
    assertFailure(await redis('not-a-stream').publish(message()), /^WRONGTYPE/);
  });

  test('wrong password, or none: "authentication failed" with the reason, never the password', async () => {
    assertFailure(
      await redis('events', { url: authedUrl(WRONG_PASSWORD) }).publish(message()),
      /authentication failed \(WRONGPASS/,
    );
    assertFailure(await redis('events', { url: broker.url }).publish(message()), /authentication failed \(NOAUTH/);
  });

  test('a server that does not answer: the publish fails within its timeout', async () => {
    await checkHungHandshake((port) => ({
      type: 'redis_stream',
      config: { url: `redis://:${PASSWORD}@127.0.0.1:${port}`, stream: 'events' },
    }));
  });

  test('close() settles the publishes in flight at once', async () => {
    await checkCloseSettlesInFlight(redis('closing'));
  });

  test('a connection gone silent (a partition nobody closes): publishes time out, the connection is replaced', async () => {
    const proxy = await startFreezableProxy(broker.port);
    const publisher = createPublisher(
      { type: 'redis_stream', config: { url: `redis://:${PASSWORD}@127.0.0.1:${proxy.port}`, stream: 'silent' } },
      { timeoutMs: 1500 },
    );
    try {
      assertAllOk(await publishAll(publisher, [message()]));
      proxy.freeze();
      for (const outcome of await publishAll(publisher, [message(), message()])) {
        assertFailure(outcome, /timeout: no XADD reply within 1500 ms/);
      }
      // Without a reply for a whole timeout, the connection is given up: the next publish opens a new one.
      const { failures } = await publishUntilOk(publisher, 10_000);
      assert.ok(failures.length <= 1, `failures before the new connection: ${failures.map((f) => f.error)}`);
    } finally {
      await publisher.close();
      await proxy.close();
    }
  });

  test('server stopped: publishes fail fast with the reason; restarted: they succeed again, the stream kept', async () => {
    const publisher = redis('outage');
    client.disconnect();
    await checkOutageAndRecovery(publisher, broker);
    client = new Redis(authedUrl(), { lazyConnect: true });
    client.on('error', () => {});
    await client.connect();
    assert.ok((await client.xlen('outage')) >= 5);
  });
});
