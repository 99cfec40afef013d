/**
 * Consumption at the speed of ingestion (issue #24): how fast a backlog drains, against how fast
 * the same events were ingested, in one run on one server.
 *
 *   npm run bench:consume                     # BACKLOG=50000 by default
 *   BACKLOG=20000 npm run bench:consume       # a quicker look
 *
 * The real server (embedded Postgres, WORKERS HTTP workers, default 2) on this machine, over HTTP
 * with keep-alive:
 *   1. batch ingest: BACKLOG events in batches of 1 000 from 4 concurrent producers (the baseline);
 *   2. one consumer of a consumer group: receive 1 000, ack the page, until the group is empty;
 *   3. four competing consumers of another group, the same way;
 *   4. /v1/inbox?limit=1000 + /v1/ack of each page, following cursors (the inbox of §4);
 *   5. long poll: a receive waiting with wait_s, an event posted; time from the 202 to the answer.
 * Every group starts at "earliest" and was created before the ingest, so each drains the same
 * events. For each drain, Postgres row writes per page of 1 000 (pg_stat_user_tables: inserts,
 * updates and deletes on the groups' tables and on events).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Pool } from 'undici';
import { openDatabase, socketUrl, type Sql } from '../src/db/connect.js';
import { createOrgWithKey } from '../test/helpers/api.js';
import { diffCpu, serverCpu } from './proc-stats.js';
import { TestServer } from '../test/helpers/server.js';

const BACKLOG = Number(process.env.BACKLOG || 50_000);
const WORKERS = Number(process.env.WORKERS || 2);
const PAGE = 1_000;
const PRODUCERS = 4;
const LONG_POLL_ROUNDS = 20;

interface Client {
  post(path: string, body: unknown): Promise<{ status: number; body: any }>;
  get(path: string): Promise<{ status: number; body: any }>;
}

function client(url: string, key: string, connections: number): Client & { close(): Promise<void> } {
  const pool = new Pool(url, { connections, pipelining: 1 });
  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
  const request = async (method: 'GET' | 'POST', urlPath: string, body?: unknown) => {
    const response = await pool.request({
      method,
      path: urlPath,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.body.text();
    const serverMs = parseFloat(String(response.headers['x-response-time'] ?? '0'));
    const route = urlPath.split('?')[0]!.replace(/^\/v1\/consumer-groups\/[^/]+\//, '');
    serverSpent.set(route, (serverSpent.get(route) ?? 0) + serverMs);
    return { status: response.statusCode, body: text ? JSON.parse(text) : null };
  };
  return {
    post: (urlPath, body) => request('POST', urlPath, body),
    get: (urlPath) => request('GET', urlPath),
    close: () => pool.close(),
  };
}

function expect(response: { status: number; body: any }, status: number, what: string): any {
  if (response.status !== status)
    throw new Error(`${what}: ${response.status} ${JSON.stringify(response.body).slice(0, 300)}`);
  return response.body;
}

interface Writes {
  inserts: number;
  updates: number;
  deletes: number;
}

/** Row writes so far on the groups' tables and events (all partitions), from the statistics collector. */
async function rowWrites(sql: Sql): Promise<Writes> {
  // A backend reports its counts when it goes idle, at most once a second, and otherwise 10 s
  // after (PGSTAT_IDLE_INTERVAL): wait for every backend's report. Not part of any timing.
  await new Promise((resolve) => setTimeout(resolve, 11_000));
  const [row] = await sql`
    select coalesce(sum(n_tup_ins), 0)::bigint::text as inserts, coalesce(sum(n_tup_upd), 0)::bigint::text as updates, coalesce(sum(n_tup_del), 0)::bigint::text as deletes
    from pg_stat_user_tables where relname like 'events_%' or relname in ('consumer_groups', 'consumer_group_batches')`;
  return { inserts: Number(row!.inserts), updates: Number(row!.updates), deletes: Number(row!.deletes) };
}

let lastWrites: Writes | null = null;
let primaryPid = 0;

async function measured(sql: Sql, run: () => Promise<{ events: number; pages: number }>) {
  const before = lastWrites ?? (await rowWrites(sql));
  const cpuBefore = serverCpu(primaryPid);
  const started = performance.now();
  const { events, pages } = await run();
  const seconds = (performance.now() - started) / 1000;
  // CPU of the server's processes while it ran: what the drain costs whatever else the machine does.
  const cpu = diffCpu(serverCpu(primaryPid), cpuBefore);
  const after = await rowWrites(sql);
  lastWrites = after;
  const perPage = (n: number) => (pages === 0 ? 0 : n / pages);
  return {
    events,
    pages,
    seconds,
    rate: events / seconds,
    cpuMsPerThousand: { postgres: (cpu.postgres! * 1e6) / events, http: (cpu.http_workers! * 1e6) / events },
    writesPerPage: {
      inserts: perPage(after.inserts - before.inserts),
      updates: perPage(after.updates - before.updates),
      deletes: perPage(after.deletes - before.deletes),
    },
  };
}

async function ingest(api: Client): Promise<{ events: number; pages: number }> {
  let next = 0;
  const produce = async () => {
    for (;;) {
      const start = next;
      next += PAGE;
      if (start >= BACKLOG) return;
      const events = Array.from({ length: Math.min(PAGE, BACKLOG - start) }, (_, i) => ({
        type: 'bench.consume',
        payload: {
          n: start + i,
          user: { id: start + i, plan: 'pro' },
          amount: (start + i) % 1000,
          note: 'benchmark payload',
        },
      }));
      const body = expect(await api.post('/v1/events/batch', { events }), 200, 'batch');
      if (body.accepted !== events.length) throw new Error(`batch accepted ${body.accepted} of ${events.length}`);
    }
  };
  await Promise.all(Array.from({ length: PRODUCERS }, produce));
  return { events: BACKLOG, pages: Math.ceil(BACKLOG / PAGE) };
}

/** Server time (X-Response-Time) summed per route. */
const serverSpent = new Map<string, number>();

/** Milliseconds spent in each kind of call, summed over every consumer (per page: divide by pages). */
const spent = new Map<string, number>();
async function timed<T>(what: string, call: () => Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    return await call();
  } finally {
    spent.set(what, (spent.get(what) ?? 0) + performance.now() - started);
  }
}

async function drainGroup(api: Client, name: string, consumers: number): Promise<{ events: number; pages: number }> {
  let events = 0;
  let pages = 0;
  const consume = async () => {
    for (;;) {
      const { messages } = expect(
        await timed(`${name} receive`, () => api.post(`/v1/consumer-groups/${name}/receive`, { max: PAGE })),
        200,
        'receive',
      );
      if (messages.length === 0) return;
      const ids = messages.map((message: any) => message.event.id);
      const acked = expect(
        await timed(`${name} ack`, () => api.post(`/v1/consumer-groups/${name}/ack`, { ids })),
        200,
        'ack',
      );
      if (acked.acked !== ids.length) throw new Error(`acked ${acked.acked} of ${ids.length}`);
      events += ids.length;
      pages++;
    }
  };
  await Promise.all(Array.from({ length: consumers }, consume));
  return { events, pages };
}

async function drainInbox(api: Client): Promise<{ events: number; pages: number }> {
  let events = 0;
  let pages = 0;
  let cursor = '';
  for (;;) {
    const page = expect(
      await timed('inbox read', () => api.get(`/v1/inbox?limit=${PAGE}${cursor ? '&cursor=' + cursor : ''}`)),
      200,
      'inbox',
    );
    cursor = page.next_cursor;
    if (page.events.length > 0) {
      const ids = page.events.map((event: any) => event.id);
      expect(await timed('inbox ack', () => api.post('/v1/ack', { ids })), 200, 'ack');
      events += ids.length;
      pages++;
    }
    if (!page.has_more) return { events, pages };
  }
}

async function longPoll(url: string, key: string): Promise<number[]> {
  const waiter = client(url, key, 1);
  const producer = client(url, key, 1);
  const latencies: number[] = [];
  try {
    expect(await producer.post('/v1/consumer-groups', { name: 'poll' }), 201, 'create poll group');
    for (let round = 0; round < LONG_POLL_ROUNDS; round++) {
      const waiting = waiter.post('/v1/consumer-groups/poll/receive', { wait_s: 10 });
      await new Promise((resolve) => setTimeout(resolve, 100));
      let answeredAt = 0;
      const answered = waiting.then((response) => {
        answeredAt = performance.now();
        return response;
      });
      const posted = expect(await producer.post('/v1/events', { type: 'bench.poll', payload: { round } }), 202, 'post');
      const acceptedAt = performance.now();
      const { messages } = expect(await answered, 200, 'long poll');
      if (messages[0]?.event.id !== posted.id) throw new Error('long poll answered with another event');
      // The answer may come before this side has read the 202: then the latency is under zero, counted as 0.
      latencies.push(Math.max(0, answeredAt - acceptedAt));
      expect(await producer.post('/v1/consumer-groups/poll/ack', { ids: [posted.id] }), 200, 'ack');
    }
  } finally {
    await waiter.close();
    await producer.close();
  }
  return latencies.sort((a, b) => a - b);
}

const fmtRate = (rate: number) => Math.round(rate).toLocaleString('en-US').padStart(9);
const fmtWrites = (w: Writes) =>
  `${w.inserts.toFixed(1)} ins + ${w.updates.toFixed(1)} upd + ${w.deletes.toFixed(1)} del`;

async function main(): Promise<void> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'triggers-bench-consume-'));
  fs.chmodSync(dataDir, 0o755);
  const server = await TestServer.start({ dataDir, workers: WORKERS, env: { LOG_LEVEL: 'warn' } });
  primaryPid = server.proc.pid!;
  const sql = openDatabase(socketUrl(path.join(dataDir, 'pg'), 'triggers'), { max: 1, name: 'bench-consume' });
  const { key } = await createOrgWithKey(server.url, {
    name: 'bench consume',
    rate_limit_per_sec: 10_000_000,
    burst: 10_000_000,
  });
  const api = client(server.url, key, 8);
  try {
    for (const name of ['solo', 'team'])
      expect(
        await api.post('/v1/consumer-groups', { name, start: 'earliest', visibility_timeout_s: 300 }),
        201,
        'create group',
      );
    console.log(
      `backlog ${BACKLOG} events, ${WORKERS} HTTP workers, machine load ${os.loadavg()[0]!.toFixed(1)} on ${os.availableParallelism()} cores`,
    );
    const ingested = await measured(sql, () => ingest(api));
    const solo = await measured(sql, () => drainGroup(api, 'solo', 1));
    const team = await measured(sql, () => drainGroup(api, 'team', 4));
    const inbox = await measured(sql, () => drainInbox(api));
    const poll = await longPoll(server.url, key);

    console.log(
      '\n' +
        'what'.padEnd(46) +
        'events/s'.padStart(9) +
        '  ratio' +
        '  CPU ms per 1 000 (Postgres + HTTP workers)' +
        '  Postgres row writes per page of 1 000',
    );
    const line = (name: string, result: Awaited<ReturnType<typeof measured>>) => {
      if (result.events !== BACKLOG) throw new Error(`${name}: drained ${result.events} of ${BACKLOG}`);
      const cpu = `${result.cpuMsPerThousand.postgres.toFixed(1)} + ${result.cpuMsPerThousand.http.toFixed(1)}`;
      console.log(
        name.padEnd(46) +
          fmtRate(result.rate) +
          (result.rate / ingested.rate).toFixed(2).padStart(7) +
          '  ' +
          cpu.padEnd(43) +
          '  ' +
          fmtWrites(result.writesPerPage),
      );
    };
    line(`batch ingest (${PRODUCERS} producers x 1000)`, ingested);
    line('group, 1 consumer (receive 1000 + ack)', solo);
    line('group, 4 competing consumers', team);
    line('/v1/inbox?limit=1000 + /v1/ack', inbox);
    const pages = { solo: solo.pages, team: team.pages, inbox: inbox.pages };
    console.log(
      '\nper page, ms (summed over consumers): ' +
        [...spent]
          .map(([what, ms]) => `${what} ${(ms / pages[what.split(' ')[0] as keyof typeof pages]).toFixed(1)}`)
          .join(', '),
    );
    console.log(
      'server time (X-Response-Time), ms summed over the whole run: ' +
        [...serverSpent].map(([route, ms]) => `${route} ${ms.toFixed(0)}`).join(', '),
    );
    const pct = (p: number) => poll[Math.min(poll.length - 1, Math.floor(p * poll.length))]!.toFixed(1);
    console.log(
      `\nlong poll, 202 -> message (${poll.length} rounds): p50 ${pct(0.5)} ms, p95 ${pct(0.95)} ms, max ${poll.at(-1)!.toFixed(1)} ms`,
    );
    console.log(
      `targets: 1 consumer >= 0.80 of ingest: ${solo.rate / ingested.rate >= 0.8 ? 'met' : 'NOT met'} (${(solo.rate / ingested.rate).toFixed(2)}); ` +
        `4 faster than 1: ${team.rate > solo.rate ? 'met' : 'NOT met'} (${(team.rate / solo.rate).toFixed(2)}x); ` +
        `long poll within 50 ms: ${poll.at(-1)! <= 50 ? 'met' : 'NOT met'} (max ${poll.at(-1)!.toFixed(1)} ms); ` +
        `inbox >= 0.80 (stretch): ${inbox.rate / ingested.rate >= 0.8 ? 'met' : 'not met'} (${(inbox.rate / ingested.rate).toFixed(2)})`,
    );
  } finally {
    await api.close();
    await sql.end({ timeout: 1 });
    await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
