/**
 * The broker baseline of issue #27: how fast the same client publishes to each broker directly,
 * with the same confirm semantics as a delivery (a RabbitMQ publisher confirm, a JetStream PubAck,
 * an XADD reply), `concurrency` messages in flight on one connection. The end-to-end benchmark
 * puts the server's deliveries/s next to this figure.
 *
 *   npm run build && node dist/bench/broker-baseline.js
 *   BENCH_BROKER_MESSAGES=20000 BENCH_BROKER_IN_FLIGHT=200 BENCH_BROKERS=nats,redis_stream node dist/bench/broker-baseline.js
 *
 * Run as a script, it starts each broker (test/helpers/brokers.ts), publishes a warm-up, then
 * measures the direct client and, for the overhead, the same count through createPublisher
 * (src/destinations/), and prints both rates and their ratio.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import type { OutgoingMessage } from '../src/delivery/transport.js';
import { createPublisher, type Destination } from '../src/destinations/publisher.js';
import {
  natsUnavailable,
  rabbitMqUnavailable,
  redisUnavailable,
  startNats,
  startRabbitMq,
  startRedis,
} from '../test/helpers/brokers.js';

const require = createRequire(import.meta.url);

/**
 * A message like a delivery's: a ≈280-byte JSON body and the three webhook-* values. Ids are new
 * in every run (`run`), or JetStream would drop them as duplicates of the run before.
 */
export function benchMessage(n: number, run = runTag()): OutgoingMessage {
  const eventId = `evt_${run}${String(n).padStart(10, '0')}`;
  return {
    eventId,
    eventType: 'order.paid',
    headers: {
      'webhook-id': eventId,
      'webhook-timestamp': '1796457600',
      'webhook-signature': 'v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=',
    },
    body: JSON.stringify({
      id: eventId,
      type: 'order.paid',
      payload: { order_id: `ord_${n}`, amount: 4200, currency: 'EUR', customer: { id: 'cus_123', country: 'DE' } },
      occurred_at: '2026-12-05T08:00:00.000Z',
      received_at: '2026-12-05T08:00:00.001Z',
    }),
  };
}

function runTag(): string {
  return Math.random().toString(36).slice(2, 10);
}

function benchMessages(count: number): OutgoingMessage[] {
  const run = runTag();
  return Array.from({ length: count }, (_, n) => benchMessage(n, run));
}

/** Keeps `concurrency` sends in flight until `count` are done; returns messages/s (connecting excluded). */
async function windowed(count: number, concurrency: number, send: (n: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const started = performance.now();
  const lane = async (): Promise<void> => {
    while (next < count) await send(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane));
  return count / ((performance.now() - started) / 1000);
}

/**
 * Messages/s of the broker's own client publishing directly, each publish awaited to its confirm,
 * `concurrency` in flight on one connection (one confirm channel for RabbitMQ).
 */
export async function publishDirect(destination: Destination, count: number, concurrency: number): Promise<number> {
  const messages = benchMessages(count);
  switch (destination.type) {
    case 'rabbitmq': {
      const amqp = require('amqplib') as typeof import('amqplib');
      const { url, exchange, routing_key } = destination.config;
      const model = await amqp.connect(url);
      try {
        const channel = await model.createConfirmChannel();
        return await windowed(count, concurrency, (n) => {
          const m = messages[n]!;
          return new Promise<void>((resolve, reject) => {
            channel.publish(
              exchange,
              routing_key ?? m.eventType,
              Buffer.from(m.body),
              {
                persistent: true,
                mandatory: true,
                contentType: 'application/json',
                messageId: m.eventId,
                type: m.eventType,
                headers: m.headers,
              },
              (error: unknown) => (error ? reject(error) : resolve()),
            );
          });
        });
      } finally {
        await model.close();
      }
    }
    case 'nats': {
      const nats = require('nats') as typeof import('nats');
      const connection = await nats.connect({ servers: destination.config.servers, reconnect: false });
      try {
        const js = connection.jetstream();
        const subject = destination.config.subject;
        return await windowed(count, concurrency, (n) => {
          const m = messages[n]!;
          const headers = nats.headers();
          headers.set('content-type', 'application/json');
          headers.set('type', m.eventType);
          for (const name in m.headers) headers.set(name, m.headers[name]!);
          return js.publish(subject, Buffer.from(m.body), { msgID: m.eventId, headers });
        });
      } finally {
        await connection.close();
      }
    }
    case 'redis_stream': {
      const { Redis } = require('ioredis') as typeof import('ioredis');
      const redis = new Redis(destination.config.url, { enableAutoPipelining: true });
      redis.on('error', () => {});
      try {
        const stream = destination.config.stream;
        return await windowed(count, concurrency, (n) => {
          const m = messages[n]!;
          return redis.xadd(
            stream,
            '*',
            'body',
            m.body,
            'type',
            m.eventType,
            'webhook-id',
            m.headers['webhook-id']!,
            'webhook-timestamp',
            m.headers['webhook-timestamp']!,
            'webhook-signature',
            m.headers['webhook-signature']!,
          );
        });
      } finally {
        redis.disconnect();
      }
    }
  }
}

/** The same through createPublisher (src/destinations/): messages/s; throws if any publish failed. */
export async function publishThroughPublisher(
  destination: Destination,
  count: number,
  concurrency: number,
): Promise<number> {
  const messages = benchMessages(count);
  const publisher = createPublisher(destination, { timeoutMs: 10_000 });
  try {
    const first = await publisher.publish(benchMessage(-1)); // connected before the clock starts
    if (!first.ok) throw new Error(`publish failed: ${first.error}`);
    let failed: string | null = null;
    const rate = await windowed(count, concurrency, async (n) => {
      const outcome = await publisher.publish(messages[n]!);
      if (!outcome.ok) failed ??= outcome.error;
    });
    if (failed !== null) throw new Error(`publish failed: ${failed}`);
    return rate;
  } finally {
    await publisher.close();
  }
}

async function main(): Promise<void> {
  const count = Number(process.env.BENCH_BROKER_MESSAGES ?? 20_000);
  const concurrency = Number(process.env.BENCH_BROKER_IN_FLIGHT ?? 200);
  const only = process.env.BENCH_BROKERS?.split(',');
  const wanted = (type: string): boolean => only === undefined || only.includes(type);
  console.log(`broker baseline: ${count} messages, ${concurrency} in flight, one connection\n`);
  const rows: string[] = [];
  const measure = async (label: string, destination: Destination, prepare?: () => Promise<void>) => {
    await prepare?.();
    await publishDirect(destination, Math.min(2000, count), concurrency); // warm-up
    const direct = await publishDirect(destination, count, concurrency);
    const through = await publishThroughPublisher(destination, count, concurrency);
    const direct2 = await publishDirect(destination, count, concurrency);
    const best = Math.max(direct, direct2);
    rows.push(
      `${label.padEnd(13)} direct ${Math.round(direct)}/s, ${Math.round(direct2)}/s   ` +
        `createPublisher ${Math.round(through)}/s   ratio ${(through / best).toFixed(2)}`,
    );
    console.log(rows.at(-1));
  };

  if (wanted('rabbitmq') && rabbitMqUnavailable() === null) {
    const broker = await startRabbitMq();
    console.log(`rabbitmq-server booted in ${broker.bootMs} ms`);
    try {
      await measure('rabbitmq', { type: 'rabbitmq', config: { url: broker.url, exchange: 'bench' } }, async () => {
        await broker.declareBoundQueue('bench');
      });
    } finally {
      await broker.destroy();
    }
  }
  if (wanted('nats') && natsUnavailable() === null) {
    const broker = await startNats({ jetstream: true });
    console.log(`nats-server booted in ${broker.bootMs} ms`);
    try {
      await broker.addStream('BENCH', ['bench.>']);
      await measure('nats', { type: 'nats', config: { servers: [broker.url], subject: 'bench.events' } });
    } finally {
      await broker.destroy();
    }
  }
  if (wanted('redis_stream') && redisUnavailable() === null) {
    const broker = await startRedis();
    try {
      await measure('redis_stream', { type: 'redis_stream', config: { url: broker.url, stream: 'bench' } });
    } finally {
      await broker.destroy();
    }
  }
  console.log(`\n${rows.join('\n')}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
