import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { Registry } from 'prom-client';
import type { CopyWriter } from '../src/db/client-copy.js';
import { openDatabase, type Sql } from '../src/db/connect.js';
import { ApiError } from '../src/errors.js';
import { EventBatcher } from '../src/ingest/batcher.js';
import { validateEvent } from '../src/ingest/validate.js';
import { statusRoutes } from '../src/ops/status.js';
import { FastCounter, FastHistogram } from '../src/metrics/series.js';
import { call, createOrgWithKey, sendEvent } from './helpers/api.js';
import { holdEventsLock, TestPostgres } from './helpers/postgres.js';
import { workerPids, workersOf } from './helpers/processes.js';
import { requirePromtool } from './helpers/promtool.js';
import { TestServer } from './helpers/server.js';
import { Receiver } from './webhooks-receiver.js';

const METRICS_TOKEN = 'metrics-token-for-tests-0123';

let pg: TestPostgres;
let server: TestServer;
let guarded: TestServer;
let base: string;

before(async () => {
  pg = await TestPostgres.shared();
  server = await TestServer.start({
    databaseUrl: await pg.createDatabase('metrics'),
    workers: 2,
    // Webhooks to a receiver on 127.0.0.1, retried quickly.
    env: { WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_RETRY_SCHEDULE: '200ms' },
  });
  base = server.url;
});

after(async () => {
  await server?.stop();
  await guarded?.stop();
  await pg?.stop();
});

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Prometheus text exposition → samples (enough of the format for what prom-client writes). */
function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(match, `unparseable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of match[2]?.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g) ?? [])
      labels[pair[1]!] = pair[2]!;
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

/** Sum of the samples named `name` whose labels include `labels`; 0 when there are none. */
function metric(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const sample of samples) {
    if (sample.name !== name) continue;
    if (Object.entries(labels).every(([label, value]) => sample.labels[label] === value)) sum += sample.value;
  }
  return sum;
}

async function scrape(url = base, headers: Record<string, string> = {}) {
  const response = await fetch(url + '/metrics', { headers });
  const text = await response.text();
  return { status: response.status, headers: response.headers, text };
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** One GET /metrics on a new connection (so SO_REUSEPORT may pick any worker), aborted after `timeoutMs`. */
function scrapeOnNewConnection(port: number, timeoutMs: number): Promise<{ status: number; text: string } | null> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/metrics', agent: false, timeout: timeoutMs }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        text += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode!, text }));
      res.on('error', () => resolve(null));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
  });
}

describe('GET /metrics', () => {
  test('is valid Prometheus text (promtool check metrics) and its counters move with traffic', async (t) => {
    const { key } = await createOrgWithKey(base);
    const before = parseMetrics((await scrape()).text);
    const ingestedBefore = metric(before, 'events_ingested_total');
    const accepted202Before = metric(before, 'http_requests_total', { route: 'POST /v1/events', status: '202' });
    const hitsBefore = metric(before, 'cache_lookups_total', { result: 'hit' });

    // One after another first (after the first, the key is cached in that worker), then at once.
    const sequential = 10;
    const single = 30;
    for (let i = 0; i < sequential; i++)
      assert.equal((await sendEvent(base, key, { type: 'metrics.test', payload: { i } })).status, 202);
    const sent = await Promise.all(
      Array.from({ length: single - sequential }, (_, i) =>
        sendEvent(base, key, { type: 'metrics.test', payload: { i } }),
      ),
    );
    for (const response of sent) assert.equal(response.status, 202, response.text);
    const duplicate = await sendEvent(base, key, { type: 'metrics.test', payload: {}, dedup_id: 'same' });
    assert.equal(duplicate.status, 202);
    assert.equal((await sendEvent(base, key, { type: 'metrics.test', payload: {}, dedup_id: 'same' })).status, 200);
    assert.equal((await sendEvent(base, key, { type: 'bad type!', payload: {} })).status, 422);
    const batch = await call(base, 'POST', '/v1/events/batch', {
      key,
      body: { events: [{ type: 'ok', payload: {} }, { payload: {} }] },
    });
    assert.equal(batch.status, 200);
    assert.equal(batch.body.accepted, 1);
    assert.equal((await call(base, 'GET', '/no/such/route')).status, 404);

    const stored = single + 1 + 1;
    const after = await waitFor('events_ingested_total to count the stored events', async () => {
      const samples = parseMetrics((await scrape()).text);
      return metric(samples, 'events_ingested_total') >= ingestedBefore + stored ? samples : undefined;
    });
    assert.equal(metric(after, 'events_ingested_total') - ingestedBefore, stored, 'duplicates are not stored events');
    assert.ok(metric(after, 'events_duplicate_total') >= 1);
    assert.ok(
      metric(after, 'http_requests_total', { route: 'POST /v1/events', status: '202' }) - accepted202Before >=
        single + 1,
    );
    assert.ok(metric(after, 'http_requests_total', { route: 'POST /v1/events', status: '200' }) >= 1);
    assert.ok(metric(after, 'http_requests_total', { route: 'not_found', status: '404' }) >= 1);
    // Only a worker's first request with a key (and requests racing it) can miss.
    assert.ok(
      metric(after, 'cache_lookups_total', { result: 'hit' }) - hitsBefore >= sequential - 1,
      'API key cache hits counted',
    );
    assert.ok(metric(after, 'cache_lookups_total', { result: 'miss' }) >= 1);
    assert.ok(metric(after, 'event_ingestion_latency_seconds_count') >= single + 3);
    assert.ok(metric(after, 'auth_latency_seconds_count') >= single);
    assert.ok(
      metric(after, 'rate_limit_check_latency_seconds_count') >= single,
      'every ingest request charges the rate limit',
    );
    assert.ok(metric(after, 'db_operations_latency_seconds_count', { operation: 'flush' }) >= 1);
    assert.ok(
      metric(after, 'validation_errors_total', { type: 'validation_failed' }) >= 2,
      'a 422 and a rejected batch item',
    );
    assert.equal(metric(after, 'metrics_scrape_workers_missing'), 0);
    const processes = 1 + workersOf(server.proc.pid!).length;
    assert.ok(processes >= 3);
    assert.equal(
      metric(after, 'metrics_scrape_processes'),
      processes,
      'the primary and every worker (2 HTTP, delivery)',
    );
    for (const name of [
      'event_queue_size',
      'rate_limit_check_latency_seconds_count',
      'webhook_deliveries_total',
      'process_cpu_seconds_total',
      'nodejs_eventloop_lag_seconds',
    ]) {
      assert.ok(
        after.some((sample) => sample.name === name),
        `${name} is exposed`,
      );
    }
    // Bounded cardinality: no label carries an id or a key.
    for (const sample of after) {
      for (const value of Object.values(sample.labels)) {
        assert.doesNotMatch(
          value,
          /[0-9a-f]{8}-[0-9a-f]{4}-|zt_/,
          `${sample.name} has an unbounded label value ${value}`,
        );
      }
    }

    // Histograms as Prometheus expects them: cumulative buckets, +Inf equal to _count.
    const ingestBuckets = after.filter((sample) => sample.name === 'event_ingestion_latency_seconds_bucket');
    assert.deepEqual(
      ingestBuckets.map((sample) => sample.value),
      [...ingestBuckets.map((sample) => sample.value)].sort((a, b) => a - b),
    );
    assert.equal(
      metric(after, 'event_ingestion_latency_seconds_bucket', { le: '+Inf' }),
      metric(after, 'event_ingestion_latency_seconds_count'),
    );

    const final = await scrape();
    assert.equal(final.status, 200);
    assert.match(final.headers.get('content-type')!, /^text\/plain; version=0\.0\.4/);
    assert.ok(final.headers.get('x-request-id'));
    const promtool = requirePromtool(t, 'format check');
    if (!promtool) return;
    const check = spawnSync(promtool, ['check', 'metrics'], { input: final.text, encoding: 'utf8' });
    assert.equal(check.status, 0, `promtool check metrics failed:\n${check.stdout}${check.stderr}`);
  });

  test('inbox reads, acks, consumer group operations and webhook attempts are recorded', async () => {
    const { key } = await createOrgWithKey(base);
    // The first attempt fails (retried), the retry succeeds.
    const receiver = await Receiver.start((n) => ({ status: n === 0 ? 500 : 204 }));
    try {
      const before = parseMetrics((await scrape()).text);
      for (const operation of ['flush', 'inbox_read', 'ack', 'group_receive', 'group_ack', 'group_change']) {
        assert.ok(
          before.some((sample) => sample.name === 'db_operation_errors_total' && sample.labels.operation === operation),
          `db_operation_errors_total{operation="${operation}"} is exposed before any error`,
        );
      }
      const count = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
        metric(samples, name, labels) - metric(before, name, labels);

      const group = await call(base, 'POST', '/v1/consumer-groups', {
        key,
        body: { name: 'metrics', start: 'earliest' },
      });
      assert.equal(group.status, 201, group.text);
      const webhook = await call(base, 'POST', '/v1/webhooks', { key, body: { url: receiver.url } });
      assert.equal(webhook.status, 201, webhook.text);
      const sent = await sendEvent(base, key, { type: 'metrics.inbox', payload: {} });
      assert.equal(sent.status, 202, sent.text);

      // An event shows in the inbox once its transaction is below the watermark: poll.
      let reads = 0;
      await waitFor('the event in the inbox', async () => {
        const page = await call(base, 'GET', '/v1/inbox', { key });
        assert.equal(page.status, 200, page.text);
        reads++;
        return page.body.events.some((event: { id: string }) => event.id === sent.body.id) ? true : undefined;
      });
      const ack = await call(base, 'POST', '/v1/ack', { key, body: { ids: [sent.body.id] } });
      assert.equal(ack.status, 200, ack.text);
      assert.equal(ack.body.acked, 1);
      let receives = 0;
      await waitFor('the event in the group', async () => {
        const page = await call(base, 'POST', '/v1/consumer-groups/metrics/receive', { key, body: {} });
        receives++;
        return page.body.messages.length === 1 ? true : undefined;
      });
      assert.equal(
        (await call(base, 'POST', '/v1/consumer-groups/metrics/ack', { key, body: { ids: [sent.body.id] } })).status,
        200,
      );
      assert.equal(
        (await call(base, 'POST', '/v1/consumer-groups/metrics/seek', { key, body: { to: 'earliest' } })).status,
        200,
      );
      assert.equal(
        (await call(base, 'POST', '/v1/consumer-groups/missing/ack', { key, body: { ids: [sent.body.id] } })).status,
        404,
      );

      const after = await waitFor('the webhook retry counted as succeeded', async () => {
        const samples = parseMetrics((await scrape()).text);
        return count(samples, 'webhook_deliveries_total', { status: 'succeeded' }) >= 1 ? samples : undefined;
      });
      assert.equal(
        count(after, 'db_operations_latency_seconds_count', { operation: 'inbox_read' }),
        reads,
        'every inbox page read is timed',
      );
      assert.equal(count(after, 'db_operations_latency_seconds_count', { operation: 'ack' }), 1, 'the ack is timed');
      assert.equal(count(after, 'db_operation_errors_total', { operation: 'inbox_read' }), 0);
      assert.equal(count(after, 'db_operation_errors_total', { operation: 'ack' }), 0);
      assert.equal(
        count(after, 'db_operations_latency_seconds_count', { operation: 'group_receive' }),
        receives,
        'every receive is timed',
      );
      assert.equal(
        count(after, 'db_operations_latency_seconds_count', { operation: 'group_ack' }),
        1,
        'the group ack is timed; an ack of a missing group is its answer, not a failed query',
      );
      assert.equal(count(after, 'db_operations_latency_seconds_count', { operation: 'group_change' }), 1, 'the seek');
      assert.equal(count(after, 'db_operation_errors_total', { operation: 'group_ack' }), 0);
      assert.equal(
        count(after, 'webhook_deliveries_total', { status: 'failed' }),
        1,
        'the 500 is a failed attempt, to be retried',
      );
      assert.equal(count(after, 'webhook_deliveries_total', { status: 'succeeded' }), 1);
      assert.equal(count(after, 'webhook_delivery_latency_seconds_count'), 2, 'both attempts are timed');
      assert.equal(count(after, 'webhook_delivery_lag_seconds_count'), 1, 'the lag is of the first attempt only');
      assert.equal(receiver.requests.length, 2);
    } finally {
      await receiver.close();
    }
  });

  test('a worker that does not answer degrades the scrape instead of failing it', async () => {
    const httpWorkers = workerPids(server.proc.pid!, 'http');
    assert.equal(httpWorkers.length, 2, `expected 2 HTTP workers, found ${httpWorkers}`);
    const frozen = httpWorkers[0]!;
    process.kill(frozen, 'SIGSTOP');
    try {
      // New connections until one lands on the live worker (a frozen worker's socket just hangs).
      // Four at a time, the first answer wins: one at a time, a run of landings on the frozen worker
      // cost 4.5 s each (seen in CI: 35 s). The attempt limit is below prom-client's own 5 s
      // all-or-nothing timeout.
      const answer = await waitFor(
        'a scrape answered by the live worker',
        () =>
          Promise.any(
            Array.from({ length: 4 }, () =>
              scrapeOnNewConnection(server.port, 4500).then(
                (result) => result ?? Promise.reject(new Error('no answer')),
              ),
            ),
          ).catch(() => undefined),
        60_000,
      );
      assert.equal(answer.status, 200, answer.text);
      const samples = parseMetrics(answer.text);
      assert.ok(metric(samples, 'metrics_scrape_workers_missing') >= 1, 'the frozen worker is reported missing');
      assert.ok(metric(samples, 'process_cpu_seconds_total') > 0, 'the metrics that did arrive are there');
    } finally {
      process.kill(frozen, 'SIGCONT');
    }
    await waitFor('all workers answering again', async () => {
      const samples = parseMetrics((await scrape()).text);
      return metric(samples, 'metrics_scrape_workers_missing') === 0 ? true : undefined;
    });
  });

  test('METRICS_TOKEN guards the endpoint with a bearer token', async () => {
    guarded = await TestServer.start({
      databaseUrl: await pg.createDatabase('metrics_guarded'),
      workers: 1,
      env: { METRICS_TOKEN },
    });
    const anonymous = await scrape(guarded.url);
    assert.equal(anonymous.status, 401);
    assert.equal(JSON.parse(anonymous.text).error.code, 'unauthorized');
    assert.equal((await scrape(guarded.url, { authorization: 'Bearer wrong-token' })).status, 401);
    const allowed = await scrape(guarded.url, { authorization: `Bearer ${METRICS_TOKEN}` });
    assert.equal(allowed.status, 200);
    assert.equal(
      metric(parseMetrics(allowed.text), 'metrics_scrape_processes'),
      1 + workersOf(guarded.proc.pid!).length,
    );
    assert.ok(!guarded.output.includes(METRICS_TOKEN), 'the token is never logged');
  });
});

describe('operator gauges and 503 causes', () => {
  let limited: TestServer | null = null;
  after(async () => {
    await limited?.stop();
  });

  test('webhook_endpoints_disabled counts endpoints disabled by a PATCH and by the server (410 Gone)', async () => {
    const { key } = await createOrgWithKey(base);
    const gone = await Receiver.start(() => ({ status: 410 }));
    const before = parseMetrics((await scrape()).text);
    assert.ok(
      before.some((sample) => sample.name === 'webhook_endpoints_disabled' && sample.labels.by === 'request'),
      'the gauge is exposed before any endpoint is disabled',
    );
    const disabled = (samples: Sample[], by: string) =>
      metric(samples, 'webhook_endpoints_disabled', { by }) - metric(before, 'webhook_endpoints_disabled', { by });
    const ids: string[] = [];
    try {
      const patched = await call(base, 'POST', '/v1/webhooks', { key, body: { url: gone.url + '/patched' } });
      assert.equal(patched.status, 201, patched.text);
      ids.push(patched.body.id);
      assert.equal(
        (await call(base, 'PATCH', `/v1/webhooks/${patched.body.id}`, { key, body: { enabled: false } })).status,
        200,
      );
      const dropped = await call(base, 'POST', '/v1/webhooks', { key, body: { url: gone.url + '/gone' } });
      assert.equal(dropped.status, 201, dropped.text);
      ids.push(dropped.body.id);
      assert.equal((await sendEvent(base, key, { type: 'metrics.gone', payload: {} })).status, 202);
      const samples = await waitFor(
        'both endpoints counted as disabled',
        async () => {
          const now = parseMetrics((await scrape()).text);
          return disabled(now, 'request') === 1 && disabled(now, 'server') === 1 ? now : undefined;
        },
        30_000,
      );
      assert.equal(
        samples.filter((sample) => sample.name === 'webhook_endpoints_disabled').length,
        2,
        'one series per label value, not one per process',
      );
    } finally {
      for (const id of ids) await call(base, 'DELETE', `/v1/webhooks/${id}`, { key });
      await gone.close();
    }
  });

  test('webhook_oldest_waiting_delivery_age_seconds: an event not yet delivered to a stalled receiver, and a delivery waiting for its retry', async () => {
    const stalled = await createOrgWithKey(base);
    const retried = await createOrgWithKey(base);
    // Never answers (a stopped receiver): the event stays unsent until WEBHOOK_TIMEOUT_MS (10 s).
    const hanging = await Receiver.start(() => ({ status: 200, hang: true }));
    // Refuses the first attempt, then hangs on the retry: the row stays 'failed' meanwhile.
    const failing = await Receiver.start((n) => (n === 0 ? { status: 500 } : { status: 200, hang: true }));
    const ids: Array<{ key: string; id: string }> = [];
    const age = (samples: Sample[], state: string, health: string) =>
      metric(samples, 'webhook_oldest_waiting_delivery_age_seconds', { state, endpoint_health: health });
    try {
      const idle = parseMetrics((await scrape()).text);
      assert.equal(
        idle.filter((sample) => sample.name === 'webhook_oldest_waiting_delivery_age_seconds').length,
        4,
        'state × endpoint_health, from the first scrape',
      );
      for (const [org, receiver] of [
        [stalled, hanging],
        [retried, failing],
      ] as const) {
        const created = await call(base, 'POST', '/v1/webhooks', { key: org.key, body: { url: receiver.url } });
        assert.equal(created.status, 201, created.text);
        ids.push({ key: org.key, id: created.body.id });
        assert.equal((await sendEvent(base, org.key, { type: 'metrics.waiting', payload: {} })).status, 202);
      }
      await waitFor('the retry to hang', async () =>
        failing.requests.length >= 2 && hanging.requests.length >= 1 ? true : undefined,
      );
      const samples = await waitFor(
        'both ages above 0',
        async () => {
          const now = parseMetrics((await scrape()).text);
          return age(now, 'unsent', 'ok') > 0 && age(now, 'retrying', 'failing') > 0 ? now : undefined;
        },
        30_000,
      );
      for (const [state, health] of [
        ['unsent', 'ok'],
        ['retrying', 'failing'],
      ]) {
        assert.ok(
          age(samples, state!, health!) < 120,
          `${state}/${health}: ${age(samples, state!, health!)} s is an age, not a timestamp`,
        );
      }
    } finally {
      for (const { key, id } of ids) await call(base, 'DELETE', `/v1/webhooks/${id}`, { key });
      await hanging.close();
      await failing.close();
    }
  });

  test('event_queue_limit, and http_unavailable_total by cause for an overload and a storage 503', async () => {
    const db = await pg.createDatabase('metrics_unavailable');
    // A queue of 100 events per worker, and flushes whose statements Postgres cancels after 500 ms.
    limited = await TestServer.start({
      databaseUrl: db,
      workers: 1,
      env: { MAX_QUEUED_EVENTS: '100', FLUSH_TIMEOUT_MS: '1000' },
    });
    const { key } = await createOrgWithKey(limited.url);
    const before = parseMetrics((await scrape(limited.url)).text);
    assert.equal(metric(before, 'event_queue_limit'), 100, 'MAX_QUEUED_EVENTS of the one HTTP worker');
    for (const cause of ['overloaded', 'storage', 'flush_timeout', 'shutting_down', 'auth_overloaded']) {
      assert.ok(
        before.some((sample) => sample.name === 'http_unavailable_total' && sample.labels.cause === cause),
        `cause ${cause} exposed before any 503`,
      );
    }
    const caused = (samples: Sample[], cause: string) =>
      metric(samples, 'http_unavailable_total', { cause }) - metric(before, 'http_unavailable_total', { cause });

    // More events than the queue may hold: refused at once, nothing stored.
    const events = Array.from({ length: 101 }, (_, i) => ({ type: 'metrics.overload', payload: { i } }));
    const overload = await call(limited.url, 'POST', '/v1/events/batch', { key, body: { events } });
    assert.equal(overload.status, 503, overload.text);
    assert.equal(overload.headers.get('retry-after'), '1');

    // A lock COPY must wait for: Postgres cancels the flush (statement_timeout), a storage failure.
    const sql = openDatabase(db, { max: 1, name: 'metrics-test-lock' });
    try {
      const lock = await holdEventsLock(sql);
      const stalled = await sendEvent(limited.url, key, { type: 'metrics.storage', payload: {} });
      lock.release();
      await lock.done;
      assert.equal(stalled.status, 503, stalled.text);
    } finally {
      await sql.end({ timeout: 1 });
    }

    const after = await waitFor('both 503s counted', async () => {
      const samples = parseMetrics((await scrape(limited!.url)).text);
      return caused(samples, 'overloaded') >= 1 && caused(samples, 'storage') >= 1 ? samples : undefined;
    });
    assert.equal(caused(after, 'overloaded'), 1);
    assert.equal(caused(after, 'storage'), 1);
    assert.equal(caused(after, 'flush_timeout') + caused(after, 'other'), 0);
    // Every 503 has its cause: the two counts agree.
    assert.equal(metric(after, 'http_unavailable_total'), metric(after, 'http_requests_total', { status: '503' }));
  });
});

describe('the batcher names the cause of each 503 (src/ingest/batcher.ts, a fake COPY writer at its seam)', () => {
  const options = {
    maxBatchRows: 100,
    flushConcurrency: 1,
    maxQueuedEvents: 100,
    flushTimeoutMs: 200,
    dedupWindowHours: 24,
  };
  const event = validateEvent({ type: 'cause.test', payload: {} }, '');
  const writer = (copyFenced: () => Promise<unknown>): CopyWriter => ({ copy: copyFenced, copyFenced, close() {} });
  // Only the dedup path uses the pool: these events carry no dedup_id.
  const noPool = null as unknown as Sql;
  const causeOf = async (batcher: EventBatcher) => {
    const [outcome] = await batcher.enqueue('00000000-0000-7000-8000-000000000001', [event], Date.now());
    assert.ok(outcome instanceof ApiError, `refused, not ${JSON.stringify(outcome)}`);
    assert.equal(outcome.status, 503);
    assert.equal(outcome.headers?.['Retry-After'], '1');
    return outcome.unavailableCause;
  };

  test('a flush that outlives FLUSH_TIMEOUT_MS: flush_timeout; one that fails: storage; a full queue: overloaded', async () => {
    assert.equal(
      await causeOf(
        new EventBatcher(
          noPool,
          writer(() => new Promise(() => {})),
          options,
        ),
      ),
      'flush_timeout',
    );
    const refused = Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' });
    assert.equal(
      await causeOf(
        new EventBatcher(
          noPool,
          writer(() => Promise.reject(refused)),
          options,
        ),
      ),
      'storage',
    );
    const full = new EventBatcher(
      noPool,
      writer(() => new Promise(() => {})),
      options,
    );
    assert.throws(
      () => full.enqueue('00000000-0000-7000-8000-000000000001', Array(101).fill(event), Date.now()),
      (error: ApiError) => error.status === 503 && error.unavailableCause === 'overloaded',
    );
  });
});

test('GET /status names its 503 dependency_down when a required check is down, and no cause otherwise', async () => {
  const check = (name: string, required: boolean, result: 'ok' | 'down') => ({
    name,
    required,
    run: async () => result,
  });
  const handle = (checks: ReturnType<typeof check>[]) =>
    statusRoutes(checks, Date.now())[0]!.handle(null as never, undefined);
  const down = await handle([check('postgres', true, 'down'), check('redis', false, 'ok')]);
  assert.equal(down.status, 503);
  assert.equal(down.unavailableCause, 'dependency_down');
  assert.equal(down.headers?.['Retry-After'], '5');
  const degraded = await handle([check('postgres', true, 'ok'), check('redis', false, 'down')]);
  assert.equal(degraded.status, 200, 'an optional dependency down still serves');
  assert.equal(degraded.unavailableCause, undefined);
});

describe('allocation-free series (src/metrics/series.ts)', () => {
  test('histogram buckets are cumulative, le is inclusive, +Inf equals the count', async () => {
    const registry = new Registry();
    const histogram = new FastHistogram('t_seconds', 'test', [0.001, 0.01, 0.1], registry);
    const slot = histogram.child({ route: 'r' });
    for (const value of [0.0005, 0.001, 0.002, 0.01, 0.05, 3]) slot.observe(value);
    const counter = new FastCounter('t_total', 'test', registry);
    counter.child({ result: 'hit' }).inc();
    counter.child({ result: 'hit' }).inc(2);
    const samples = parseMetrics(await registry.metrics());
    const bucket = (le: string) => metric(samples, 't_seconds_bucket', { route: 'r', le });
    assert.deepEqual(['0.001', '0.01', '0.1', '+Inf'].map(bucket), [2, 4, 5, 6]);
    assert.equal(metric(samples, 't_seconds_count', { route: 'r' }), 6);
    assert.ok(Math.abs(metric(samples, 't_seconds_sum', { route: 'r' }) - 3.0635) < 1e-9);
    assert.equal(metric(samples, 't_total', { result: 'hit' }), 3);
  });
});
