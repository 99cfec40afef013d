import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openDatabase, type Sql } from '../src/db/connect.js';
import { aggregateStats, type StatsInput } from '../src/delivery/endpoint-stats.js';
import { ProgressWriter } from '../src/delivery/progress-writer.js';
import { removeExpiredStats, STATS_RETENTION_MS } from '../src/ops/retention.js';
import { statsRange, statsRowsQuery } from '../src/webhooks/stats.js';
import { call, createOrgWithKey } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { TestServer } from './helpers/server.js';
import { Receiver, waitFor, type Behaviour } from './webhooks-receiver.js';

/**
 * GET /v1/webhooks/{id}/stats and /v1/destinations/{id}/stats (API.md §5): the per-minute
 * counters the progress writer keeps (sql/014_endpoint_stats.sql) against the attempt log, the
 * route's errors and tenancy, the cost of a view (a primary-key range), and their retention.
 */

let pg: TestPostgres;
let server: TestServer;
let base: string;
let databaseUrl: string;
let db: Sql;
const receivers: Receiver[] = [];

before(async () => {
  pg = await TestPostgres.shared();
  databaseUrl = await pg.createDatabase('endpoint_stats');
  server = await TestServer.start({
    databaseUrl,
    workers: 1,
    env: {
      WEBHOOK_ALLOW_HTTP: 'true',
      WEBHOOK_ALLOW_PRIVATE: 'true',
      WEBHOOK_RETRY_SCHEDULE: '200ms,200ms',
      WEBHOOK_TIMEOUT_MS: '2000',
    },
  });
  base = server.url;
  db = openDatabase(databaseUrl, { max: 2, name: 'endpoint-stats-test' });
});

after(async () => {
  for (const receiver of receivers) await receiver.close();
  await db?.end({ timeout: 1 });
  await server?.stop();
  await pg?.stop();
});

async function receiver(behaviour?: Behaviour): Promise<Receiver> {
  const started = await Receiver.start(behaviour);
  receivers.push(started);
  return started;
}

async function createWebhook(key: string, url: string, eventTypes: string[] = []): Promise<string> {
  const response = await call(base, 'POST', '/v1/webhooks', { key, body: { url, event_types: eventTypes } });
  assert.equal(response.status, 201, response.text);
  return response.body.id;
}

async function allDeliveries(key: string, endpointId: string): Promise<any[]> {
  const page = await call(base, 'GET', `/v1/webhooks/${endpointId}/deliveries?limit=250`, { key });
  assert.equal(page.status, 200, page.text);
  return page.body.deliveries;
}

interface Counts {
  succeeded: number;
  failed: number;
  dead: number;
  first_attempts: number;
}

/** What the attempt log says, per minute of each attempt's start and in total. */
function countsFromLog(deliveries: any[]): { byMinute: Map<string, Counts>; total: Counts; latencies: number[] } {
  const byMinute = new Map<string, Counts>();
  const total: Counts = { succeeded: 0, failed: 0, dead: 0, first_attempts: 0 };
  const latencies: number[] = [];
  for (const delivery of deliveries) {
    delivery.attempts.forEach((attempt: any, i: number) => {
      const last = i === delivery.attempts.length - 1;
      const outcome: keyof Counts = !last ? 'failed' : delivery.status === 'succeeded' ? 'succeeded' : delivery.status;
      const minute = new Date(Math.floor(Date.parse(attempt.at) / 60_000) * 60_000).toISOString();
      const counts = byMinute.get(minute) ?? { succeeded: 0, failed: 0, dead: 0, first_attempts: 0 };
      counts[outcome]++;
      total[outcome]++;
      if (i === 0) {
        counts.first_attempts++;
        total.first_attempts++;
      }
      byMinute.set(minute, counts);
      latencies.push(attempt.latency_ms);
    });
  }
  return { byMinute, total, latencies };
}

test('the stats count what the attempt log holds: successes, retried failures, dead deliveries, lag and latency', async () => {
  const { key } = await createOrgWithKey(base);
  const ok = await receiver();
  // Each event's first request fails, its second succeeds.
  const seen = new Set<string>();
  const flaky = await receiver((_n, request) => {
    const id = String(request.headers['webhook-id']);
    if (seen.has(id)) return { status: 200 };
    seen.add(id);
    return { status: 500 };
  });
  const failing = await receiver(() => ({ status: 500 }));
  const endpoints = {
    ok: await createWebhook(key, ok.url),
    flaky: await createWebhook(key, flaky.url),
    // One event only: an endpoint that never answers 2xx is probed 1 s, 2 s, 4 s… apart
    // (src/delivery/retry.ts probeDelayMs), so each more attempt doubles the wait.
    failing: await createWebhook(key, failing.url, ['stats.doomed']),
  };
  const events = [
    ...Array.from({ length: 5 }, (_, i) => ({ type: 'stats.event', payload: { i } })),
    { type: 'stats.doomed', payload: {} },
  ];
  const batch = await call(base, 'POST', '/v1/events/batch', { key, body: { events } });
  assert.equal(batch.status, 200, batch.text);

  const expected = { ok: 'succeeded', flaky: 'succeeded', failing: 'dead' } as const;
  for (const [name, id] of Object.entries(endpoints) as Array<[keyof typeof endpoints, string]>) {
    const count = name === 'failing' ? 1 : 6;
    const deliveries = await waitFor(
      `${name}: every delivery final`,
      async () => {
        const list = await allDeliveries(key, id);
        return list.length === count && list.every((d) => d.status === expected[name]) ? list : null;
      },
      60_000,
    );
    const log = countsFromLog(deliveries);
    const stats = await call(base, 'GET', `/v1/webhooks/${id}/stats`, { key });
    assert.equal(stats.status, 200, stats.text);
    assert.equal(stats.body.window, '1h');
    assert.equal(stats.body.bucket_seconds, 60);
    assert.equal(stats.body.buckets.length, 60, 'every minute of the hour is present');
    const { totals } = stats.body;
    assert.deepEqual(
      { succeeded: totals.succeeded, failed: totals.failed, dead: totals.dead, first_attempts: totals.first_attempts },
      log.total,
      `${name}: totals against the attempt log`,
    );
    const want = {
      ok: { succeeded: 6, failed: 0, dead: 0, first_attempts: 6 },
      flaky: { succeeded: 6, failed: 6, dead: 0, first_attempts: 6 },
      failing: { succeeded: 0, failed: 2, dead: 1, first_attempts: 1 },
    }[name];
    assert.deepEqual(log.total, want, `${name}: the attempt log as the receivers answered`);
    for (const bucket of stats.body.buckets) {
      const fromLog = log.byMinute.get(bucket.at) ?? { succeeded: 0, failed: 0, dead: 0, first_attempts: 0 };
      assert.deepEqual(
        {
          succeeded: bucket.succeeded,
          failed: bucket.failed,
          dead: bucket.dead,
          first_attempts: bucket.first_attempts,
        },
        fromLog,
        `${name}: the minute ${bucket.at}`,
      );
      if (bucket.first_attempts === 0) assert.equal(bucket.lag_ms_avg, null);
    }
    // Oldest first, one a minute, ending with the current one.
    const times = stats.body.buckets.map((b: any) => Date.parse(b.at));
    for (let i = 1; i < times.length; i++) assert.equal(times[i] - times[i - 1], 60_000);
    assert.equal(Date.parse(stats.body.to), times.at(-1) + 60_000);
    assert.ok(
      times.at(-1) <= Date.now() && Date.now() < times.at(-1) + 120_000,
      'the last bucket is the current minute',
    );
    // The 202→attempt lag of the first attempts, and the attempts' latency.
    assert.equal(typeof totals.lag_ms_avg, 'number', stats.text);
    assert.ok(totals.lag_ms_avg >= 0 && totals.lag_ms_max >= totals.lag_ms_avg, stats.text);
    assert.ok(totals.lag_ms_max < 30_000, `lag within the test's time: ${totals.lag_ms_max}`);
    const meanLatency = log.latencies.reduce((a, b) => a + b, 0) / log.latencies.length;
    assert.ok(Math.abs(totals.latency_ms_avg - meanLatency) <= 1, `latency ${totals.latency_ms_avg} vs ${meanLatency}`);
  }
});

test('another org sees 404, a webhook is not a destination, a bad window is 422', async () => {
  const owner = await createOrgWithKey(base);
  const other = await createOrgWithKey(base);
  const hook = await receiver();
  const id = await createWebhook(owner.key, hook.url);
  const foreign = await call(base, 'GET', `/v1/webhooks/${id}/stats`, { key: other.key });
  assert.equal(foreign.status, 404, foreign.text);
  assert.equal(foreign.body.error.code, 'not_found');
  assert.equal((await call(base, 'GET', `/v1/destinations/${id}/stats`, { key: owner.key })).status, 404);
  assert.equal((await call(base, 'GET', `/v1/webhooks/not-a-uuid/stats`, { key: owner.key })).status, 404);
  for (const window of ['2h', '', '1H', '60m', '1h;drop']) {
    const bad = await call(base, 'GET', `/v1/webhooks/${id}/stats?window=${encodeURIComponent(window)}`, {
      key: owner.key,
    });
    assert.equal(bad.status, 422, `${window}: ${bad.text}`);
    assert.equal(bad.body.error.code, 'validation_failed');
    assert.equal(bad.body.error.details[0].field, 'window');
  }
  const readOnly = await createOrgWithKey(base, { scopes: ['events:write'] });
  assert.equal((await call(base, 'GET', `/v1/webhooks/${id}/stats`, { key: readOnly.key })).status, 403);
  for (const [window, minutes] of [
    ['15m', 15],
    ['1h', 60],
    ['6h', 360],
    ['24h', 1440],
  ] as const) {
    const answer = await call(base, 'GET', `/v1/webhooks/${id}/stats?window=${window}`, { key: owner.key });
    assert.equal(answer.status, 200, answer.text);
    assert.equal(answer.body.buckets.length, minutes);
    assert.equal(answer.body.totals.succeeded, 0);
    assert.equal(answer.body.totals.lag_ms_avg, null);
    assert.equal(answer.body.totals.latency_ms_avg, null);
  }
});

test("a view reads only its window's rows: a range of the primary key, however much history there is", async () => {
  const { key } = await createOrgWithKey(base);
  const hook = await receiver();
  const id = await createWebhook(key, hook.url);
  const [org] = await db`select org_id from webhook_endpoints where id = ${id}`;
  const orgId = org!.org_id as string;
  // Two days of history (and a few minutes ahead, so a minute turning during the test changes
  // nothing), one success a minute, beside 50 other endpoints' history.
  await db`
    insert into endpoint_stats (org_id, endpoint_id, minute, attempts, succeeded, latency_ms_sum)
    select ${orgId}, e.id, m, 1, 1, 10
    from generate_series(date_trunc('minute', now()) - interval '2 days', date_trunc('minute', now()) + interval '5 minutes', interval '1 minute') m,
         (select ${id}::uuid as id union all select gen_random_uuid() from generate_series(1, 50)) e`;
  await db`analyze endpoint_stats`;

  for (const [window, minutes] of [
    ['15m', 15],
    ['1h', 60],
    ['24h', 1440],
  ] as const) {
    const stats = await call(base, 'GET', `/v1/webhooks/${id}/stats?window=${window}`, { key });
    assert.equal(stats.status, 200, stats.text);
    assert.equal(stats.body.totals.succeeded, minutes, `${window}: exactly the window's minutes`);
    assert.ok(stats.body.buckets.every((b: any) => b.succeeded === 1 && b.latency_ms_avg === 10));
  }

  // The route's own statement, explained: an index range on (org_id, endpoint_id, minute) that
  // reads the window's rows and nothing else.
  const { firstMs, lastMs } = statsRange('1h', Date.now());
  const described = await statsRowsQuery(db, orgId, id, firstMs, lastMs).describe();
  const [explained] = await db.unsafe(`explain (analyze, format json) ${described.string}`, [
    orgId,
    id,
    new Date(firstMs),
    new Date(lastMs),
  ] as never[]);
  const plan = (explained!['QUERY PLAN'] as any)[0].Plan;
  const scans: any[] = [];
  const walk = (node: any) => {
    if (node['Relation Name'] === 'endpoint_stats') scans.push(node);
    for (const child of node.Plans ?? []) walk(child);
  };
  walk(plan);
  assert.equal(scans.length, 1, JSON.stringify(plan));
  const scan = scans[0];
  // An index scan, or a bitmap heap scan over a bitmap index scan: either way the index's range.
  const index = scan['Node Type'] === 'Bitmap Heap Scan' ? scan.Plans?.[0] : scan;
  assert.match(index?.['Node Type'] ?? '', /Index/, JSON.stringify(scan));
  assert.equal(index['Index Name'], 'endpoint_stats_pkey');
  assert.match(index['Index Cond'], /minute/, `the window bounds the index range: ${JSON.stringify(scan)}`);
  assert.equal(index['Actual Rows'], 60, 'the index range holds the window only');
  assert.equal(scan['Actual Rows'], 60);
  assert.equal(scan['Rows Removed by Filter'] ?? 0, 0, 'no row read outside the window');
});

test("the progress writer commits an attempt whose lag does not fit 32 bits (an event 30 days old): a stats row never stalls the delivery's own row", async () => {
  const writer = new ProgressWriter(db, { disableAfterHours: 0 }, { endpointsDisabled: () => {} });
  const orgId = '00000000-0000-4000-8000-0000000000cc';
  const endpointId = '00000000-0000-4000-8000-0000000000dd';
  const now = Date.now();
  const lagMs = 30 * 86_400_000;
  let committed = false;
  writer.add({
    orgId,
    endpointId,
    deliveryId: '00000000-0000-7000-8000-0000000000ee',
    eventId: '00000000-0000-7000-8000-0000000000ff',
    eventReceivedAtMs: now - lagMs,
    status: 'succeeded',
    retryIndex: 0,
    nextAttemptAtMs: null,
    attempt: JSON.stringify({ at: new Date(now).toISOString(), response_status: 200, latency_ms: 3, error: null }),
    attemptedAtMs: now,
    latencyMs: 3,
    firstAttempt: true,
    committed: () => {
      committed = true;
    },
  });
  await waitFor('the batch committed', () => committed, 10_000);
  const [row] = await db`select lag_ms_max, first_attempts from endpoint_stats where endpoint_id = ${endpointId}`;
  assert.equal(Number(row!.lag_ms_max), lagMs);
  assert.equal(row!.first_attempts, 1);
});

test('retention deletes rows older than 25 hours and keeps the rest', async () => {
  const orgId = '00000000-0000-4000-8000-0000000000aa';
  const endpointId = '00000000-0000-4000-8000-0000000000bb';
  const now = Date.now();
  const old = new Date(now - STATS_RETENTION_MS - 60_000);
  const kept = new Date(now - STATS_RETENTION_MS + 120_000);
  await db`insert into endpoint_stats (org_id, endpoint_id, minute, attempts) values
           (${orgId}, ${endpointId}, ${old}, 1), (${orgId}, ${endpointId}, ${kept}, 1)`;
  await removeExpiredStats(db, now);
  const rows = await db`select minute from endpoint_stats where endpoint_id = ${endpointId}`;
  assert.deepEqual(
    rows.map((row) => (row.minute as Date).getTime()),
    [kept.getTime()],
  );
});

test('aggregateStats: one delta per endpoint and minute, sorted; lag only for first attempts and never negative', () => {
  const base0 = Date.UTC(2026, 11, 5, 10, 0, 0);
  const input = (endpointId: string, atMs: number, extra: Partial<StatsInput> = {}): StatsInput => ({
    orgId: 'o',
    endpointId,
    status: 'succeeded',
    attemptedAtMs: atMs,
    latencyMs: 4.6,
    firstAttempt: true,
    eventReceivedAtMs: atMs - 20,
    ...extra,
  });
  const deltas = aggregateStats([
    input('b', base0 + 61_000),
    input('a', base0 + 5_000, { status: 'failed' }),
    input('a', base0 + 59_999, { eventReceivedAtMs: base0 + 70_000 }), // another node's clock ahead
    input('a', base0 + 1_000, { firstAttempt: false, status: 'dead' }),
    input('b', base0 + 60_000, { eventReceivedAtMs: base0 }),
  ]);
  assert.deepEqual(
    deltas.map((d) => [
      d.endpointId,
      d.minuteMs - base0,
      d.attempts,
      d.succeeded,
      d.failed,
      d.dead,
      d.firstAttempts,
      d.lagMsSum,
      d.lagMsMax,
      d.latencyMsSum,
    ]),
    [
      ['a', 0, 3, 1, 1, 1, 2, 20, 20, 15],
      ['b', 60_000, 2, 2, 0, 0, 2, 60_020, 60_000, 10],
    ],
  );
});
