/**
 * bench:destinations: deliveries/s of the real server to each broker type (API.md §5b), next to the
 * same client publishing directly, measured in the same run on this machine (issue #27: ≥ 5 000
 * deliveries/s to each broker type).
 *
 *   npm run bench:destinations
 *   BENCH_DEST_EVENTS=20000 BENCH_DEST_TYPES=nats,redis_stream npm run bench:destinations
 *
 * Setup: RabbitMQ (durable classic queues v2), NATS (JetStream, file storage) and Redis (append-only, fsync always) each started on a free
 * loopback port (test/helpers/brokers.ts); `node dist/src/main.js` with WORKERS=2, its own embedded
 * Postgres in a temp dir and DESTINATION_ALLOWED_HOSTS=127.0.0.1 (bench/webhooks/server-process.ts).
 *
 * Per type:
 *   direct   EVENTS messages like a delivery's (≈280-byte JSON body, three webhook-* values) from
 *            the broker's client, IN_FLIGHT at a time on one connection, each settled by the same
 *            confirmation a delivery waits for (publisher confirm, PubAck, XADD reply): messages/s
 *            (bench/broker-baseline.ts)
 *   server   one destination of a fresh org; EVENTS events through POST /v1/events/batch (100 a
 *            batch, 8 producers); deliveries/s from the first batch answer until the broker holds
 *            every event (its queue depth, stream length or XLEN, polled every 20 ms), checked
 *            distinct by id at the end; also the rate from the end of ingest to the last arrival
 *            (delivery alone, without ingest competing for the 2 cores), and CPU µs per delivery of
 *            the delivery process, the HTTP workers, Postgres and the broker over the whole burst
 * and the ratio server / direct.
 *
 * Load goes to 127.0.0.1 only; every process started is stopped by its pid at the end, on error or
 * on a signal, and the run gives up after 10 minutes.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { Pool } from 'undici';
import type { Destination } from '../src/destinations/publisher.js';
import {
  natsUnavailable,
  rabbitMqUnavailable,
  redisUnavailable,
  startNats,
  startRabbitMq,
  startRedis,
  type TestNats,
  type TestRabbitMq,
} from '../test/helpers/brokers.js';
import type { TestRedis } from '../test/helpers/redis.js';
import { call } from '../test/helpers/api.js';
import { freePort } from '../test/helpers/server.js';
import { diffCpu, serverCpu, treeCpu } from './proc-stats.js';
import { publishDirect } from './broker-baseline.js';
import { now } from './webhooks/clock.js';
import { ingestBurst } from './webhooks/ingest-burst.js';
import { createOrg } from './webhooks/org-setup.js';
import { fmt, say } from './webhooks/output.js';
import { ServerProcess } from './webhooks/server-process.js';
import { PRODUCERS } from './webhooks/settings.js';

const EVENTS = Number(process.env.BENCH_DEST_EVENTS ?? 20_000);
const IN_FLIGHT = Number(process.env.BENCH_DEST_IN_FLIGHT ?? 256);
const TYPES = (process.env.BENCH_DEST_TYPES ?? 'rabbitmq,nats,redis_stream').split(',') as Destination['type'][];
const RUN_DEADLINE_MS = 10 * 60_000;
// The RabbitMQ queues are classic queues v2, the default from RabbitMQ 3.13 and the only kind in
// 4.x; Debian 12's 3.10 has them but defaults to v1 (BENCH_RABBIT_QUEUE_VERSION=1 for that: it
// costs the broker about a third more CPU per persistent message here). A broker-side choice.
const QUEUE_ARGUMENTS = { 'x-queue-version': Number(process.env.BENCH_RABBIT_QUEUE_VERSION ?? 2) };
const ARRIVAL_TIMEOUT_MS = 120_000;

interface Brokers {
  rabbit?: TestRabbitMq;
  nats?: TestNats;
  redis?: TestRedis;
}

const brokers: Brokers = {};
let server: ServerProcess | undefined;
let ingest: Pool | undefined;
let dataDir: string | undefined;

async function cleanup(): Promise<void> {
  await ingest?.destroy().catch(() => {});
  await server?.stop().catch((error: Error) => say(`stopping the server: ${error.message}`));
  await brokers.rabbit?.destroy().catch(() => {});
  await brokers.nats?.destroy().catch(() => {});
  await brokers.redis?.destroy().catch(() => {});
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
}

/** A target per type: the config a destination gets, and how many distinct events the broker holds. */
interface Target {
  destination: Destination;
  /** The broker's CPU seconds so far (its process tree). */
  brokerCpu(): number;
  prepare(): Promise<void>;
  /** Messages the broker holds now (cheap; polled). */
  count(): Promise<number>;
  /** Every event id the broker holds (once, at the end). */
  ids(): Promise<string[]>;
  reset(): Promise<void>;
}

function target(type: Destination['type'], name: string): Target {
  if (type === 'rabbitmq') {
    const rabbit = brokers.rabbit!;
    const exchange = `bench.${name}`;
    let queue = '';
    return {
      destination: { type, config: { url: rabbit.url, exchange } },
      brokerCpu: () => treeCpu(rabbit.pid!),
      prepare: async () => {
        queue = await rabbit.declareBoundQueue(exchange, '#', 'topic', QUEUE_ARGUMENTS);
      },
      count: async () => {
        const model = await rabbit.connect();
        try {
          const channel = await model.createChannel();
          return (await channel.checkQueue(queue)).messageCount;
        } finally {
          await model.close();
        }
      },
      ids: async () => (await rabbit.drainQueue(queue, 0)).map((m) => JSON.parse(m.content.toString()).id as string),
      reset: async () => {
        await rabbit.drainQueue(queue, 0);
      },
    };
  }
  if (type === 'nats') {
    const nats = brokers.nats!;
    const stream = `BENCH_${name.toUpperCase()}`;
    const subject = `bench.${name}`;
    const streamCount = async () => {
      const nc = await nats.connect();
      try {
        return (await (await nc.jetstreamManager()).streams.info(stream)).state.messages;
      } finally {
        await nc.close();
      }
    };
    return {
      destination: { type, config: { servers: [nats.url], subject } },
      brokerCpu: () => treeCpu(nats.pid!),
      prepare: () => nats.addStream(stream, [subject]),
      count: streamCount,
      ids: async () =>
        (await nats.readStream(stream)).map((m) => JSON.parse(new TextDecoder().decode(m.data)).id as string),
      reset: async () => {
        const nc = await nats.connect();
        try {
          await (await nc.jetstreamManager()).streams.purge(stream);
        } finally {
          await nc.close();
        }
      },
    };
  }
  const redis = brokers.redis!;
  const key = `bench:${name}`;
  const client = new Redis(redis.url);
  return {
    destination: { type, config: { url: redis.url, stream: key } },
    brokerCpu: () => treeCpu(redis.pid!),
    prepare: async () => {},
    count: () => client.xlen(key),
    ids: async () => {
      const entries = await client.xrange(key, '-', '+');
      client.disconnect();
      return entries.map(([, fields]) => JSON.parse(fields[1]!).id as string);
    },
    reset: async () => {
      await client.del(key);
    },
  };
}

async function run(): Promise<void> {
  say(
    `bench:destinations on ${os.availableParallelism()} cores, node ${process.version}; ${fmt(EVENTS)} events per run`,
  );
  const missing = [
    TYPES.includes('rabbitmq') ? rabbitMqUnavailable() : null,
    TYPES.includes('nats') ? natsUnavailable() : null,
    TYPES.includes('redis_stream') ? redisUnavailable() : null,
  ].filter((reason) => reason !== null);
  if (missing.length > 0) throw new Error(`brokers missing: ${missing.join('; ')}`);
  [brokers.rabbit, brokers.nats, brokers.redis] = await Promise.all([
    TYPES.includes('rabbitmq') ? startRabbitMq() : undefined,
    TYPES.includes('nats') ? startNats({ jetstream: true }) : undefined,
    TYPES.includes('redis_stream') ? startRedis() : undefined,
  ]);
  say('brokers started on 127.0.0.1');

  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'triggers-bench-destinations-'));
  fs.chmodSync(dataDir, 0o755); // as root, Postgres runs as the "postgres" user and must reach its directory
  process.env.DESTINATION_ALLOWED_HOSTS = '127.0.0.1';
  server = ServerProcess.spawn(dataDir, await freePort());
  await server.waitReady(120_000);
  ingest = new Pool(server.url, { connections: PRODUCERS * 2, pipelining: 1, keepAliveTimeout: 30_000 });
  say(`server (pid ${server.proc.pid}) serving on ${server.url}`);

  const rows: string[][] = [];
  for (const type of TYPES) {
    const direct = target(type, `${type}_direct`);
    await direct.prepare();
    await publishDirect(direct.destination, Math.min(2_000, EVENTS), IN_FLIGHT); // warm-up
    const directRate = await publishDirect(direct.destination, EVENTS, IN_FLIGHT);
    await direct.reset();

    const through = target(type, `${type}_server`);
    await through.prepare();
    const key = await createOrg(server.url, `bench-${type}`);
    const created = await call(server.url, 'POST', '/v1/destinations', {
      key,
      body: { type, config: through.destination.config },
    });
    if (created.status !== 201) throw new Error(`create ${type} destination: ${created.status} ${created.text}`);
    // Warm-up: the destination's connection, the stream's window.
    await ingestBurst(ingest, key, 'bench.warm', 1_000);
    await waitForCount(through, 1_000);
    await through.reset();

    const cpuBefore = serverCpu(server.proc.pid!);
    const brokerBefore = through.brokerCpu();
    const burst = await ingestBurst(ingest, key, 'bench.event', EVENTS);
    // Once ingest is done the server only delivers: the drain rate from here is the delivery path alone.
    const heldAtIngestEnd = await through.count();
    const ingestEndAt = now();
    const accepted = burst.answeredAt.size;
    const doneAt = await waitForCount(through, accepted);
    const cpu = diffCpu(serverCpu(server.proc.pid!), cpuBefore);
    const brokerSeconds = through.brokerCpu() - brokerBefore;
    const seconds = (doneAt - burst.firstAnswer) / 1000;
    const serverRate = accepted / seconds;
    const drainRate = (accepted - heldAtIngestEnd) / ((doneAt - ingestEndAt) / 1000);
    const held = new Set(await through.ids());
    const missingIds = [...burst.answeredAt.keys()].filter((id) => !held.has(id)).length;
    if (missingIds > 0) throw new Error(`${type}: ${missingIds} accepted events are not in the broker`);
    const perDelivery = (cpuSeconds: number) => fmt((cpuSeconds * 1e6) / accepted);
    rows.push([
      type,
      fmt(directRate),
      fmt(serverRate),
      fmt(serverRate / directRate, 2),
      heldAtIngestEnd >= accepted ? '-' : fmt(drainRate),
      fmt(accepted / ((burst.lastAnswer - burst.firstAnswer) / 1000)),
      `${perDelivery(cpu.node_workers! - cpu.http_workers!)} | ${perDelivery(cpu.http_workers!)} | ${perDelivery(cpu.postgres!)} | ${perDelivery(brokerSeconds)}`,
    ]);
    say(`${type}: direct ${fmt(directRate)}/s, through the server ${fmt(serverRate)}/s`);
  }
  say('');
  say(
    '| type | direct publish/s | server deliveries/s | ratio | after ingest ended: deliveries/s | ingest events/s | CPU µs/delivery: delivery | http | postgres | broker |',
  );
  say('|---|---|---|---|---|---|---|---|---|---|');
  for (const row of rows) say(`| ${row.join(' | ')} |`);
}

/** Polls until the broker holds `count` messages; returns that moment on ingestBurst's clock. */
async function waitForCount(target: Target, count: number): Promise<number> {
  const deadline = now() + ARRIVAL_TIMEOUT_MS;
  for (;;) {
    const held = await target.count();
    if (held >= count) return now();
    if (now() > deadline) throw new Error(`only ${held} of ${count} messages arrived`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const deadline = setTimeout(() => {
  say(`bench:destinations: FAILED: not finished within ${RUN_DEADLINE_MS / 60_000} minutes`);
  void cleanup().finally(() => process.exit(1));
}, RUN_DEADLINE_MS);
deadline.unref();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => void cleanup().finally(() => process.exit(130)));
}

let exitCode = 0;
try {
  await run();
} catch (error) {
  exitCode = 1;
  say(`bench:destinations: FAILED: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  if (server) say(`--- server output (tail) ---\n${server.tail(3_000)}`);
} finally {
  await cleanup();
}
process.exit(exitCode);
