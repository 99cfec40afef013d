import { execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openDatabase, socketUrl, type Sql } from '../src/db/connect.js';
import { call, createOrgWithKey } from '../test/helpers/api.js';
import { freePort, TestServer } from '../test/helpers/server.js';
import { BENCH_EVENT as EVENT, BENCH_PAYLOAD as PAYLOAD, startBareUws } from './bare-server.js';
import { openLoop } from './open-loop.js';
import type { LoadRow as Row, PerEvent } from './load-row.js';
import {
  descendantsOf,
  diffCpu,
  machineBusySeconds,
  rssMb,
  serverCpu,
  commandOf,
  treeCpu,
  type CpuGroups,
} from './proc-stats.js';
import { rawCopyRate } from './raw-copy.js';
import { wrkPost } from './wrk.js';

/**
 * Load benchmark of the full server (embedded Postgres, durable 202s), with its baselines run in
 * the same invocation on this machine:
 *   single   wrk POST /v1/events at each connection count, beside a bare uWS endpoint that only
 *            parses the same JSON and answers 202
 *   batch    wrk POST /v1/events/batch (100 events a request), beside raw COPY into the same table
 *   open     open-loop fixed rate (BENCH_RATE, default 5000 req/s): latency percentiles, errors
 *   drain    single-event ingest while a consumer polls the inbox and acks
 *   soak     (not in the default set) BENCH_SOAK_SECONDS (300) of steady load, worker RSS sampled every 10 s
 *   typed    (not in the default set) single POSTs of a type with a typical schema (5 properties, an
 *            enum, a format: TYPED_SCHEMA) against the same POSTs of an org without event types,
 *            alternating, BENCH_TYPED_ROUNDS (3) rounds of each at 64 connections (issue #26)
 * After each durable run the rows in Postgres are checked against the 2xx answers. Prints a table
 * and one JSON document.
 *
 *   npm run bench:load
 *   BENCH_SCENARIOS=single,batch BENCH_SECONDS=5 BENCH_CONNECTIONS=16,64,128 npm run bench:load
 *   BENCH_SMOKE=1 npm run bench:load        # 2 s runs, for CI
 *   BENCH_SCENARIOS=soak npm run bench:load # 5-minute memory soak
 *   BENCH_PG_SETTINGS=commit_delay=20,commit_siblings=1 npm run bench:load   # Postgres settings (ALTER SYSTEM) for the run
 */
const SMOKE = process.env.BENCH_SMOKE === '1';
const SECONDS = Number(process.env.BENCH_SECONDS || (SMOKE ? 2 : 10));
const CONNECTIONS = (process.env.BENCH_CONNECTIONS || (SMOKE ? '32' : '16,64,128,256')).split(',').map(Number);
const SCENARIOS = (process.env.BENCH_SCENARIOS || 'single,batch,open,drain').split(',');
const RATE = Number(process.env.BENCH_RATE || 5000);
const WORKERS = Number(process.env.WORKERS || os.availableParallelism());
const PG_SETTINGS = (process.env.BENCH_PG_SETTINGS || '')
  .split(',')
  .filter(Boolean)
  .map((pair) => pair.split('=') as [string, string]);

/** A typical schema for BENCH_PAYLOAD: five properties, an enum and a format (issue #26's cost criterion). */
const TYPED_SCHEMA = {
  type: 'object',
  required: ['user_id', 'email', 'plan'],
  properties: {
    user_id: { type: 'integer', minimum: 1 },
    email: { type: 'string', format: 'email' },
    plan: { enum: ['free', 'pro', 'team'] },
    amount: { type: 'number', minimum: 0 },
    note: { type: 'string', maxLength: 500 },
  },
};
const TYPED_EVENT = JSON.stringify({ type: 'bench.typed', payload: PAYLOAD });
const TYPED_ROUNDS = Number(process.env.BENCH_TYPED_ROUNDS || 3);

const BATCH = JSON.stringify({
  events: Array.from({ length: 100 }, () => ({ type: 'bench.batch', payload: PAYLOAD })),
});

/**
 * The physical limit of one durable event measured in this run: the bare server's CPU per request
 * (read, parse, answer) plus raw COPY's Postgres CPU per row (store). A batch request spreads the
 * bare per-request cost over its events; that part of its limit is an approximation (the bare
 * server parses a one-event body).
 */
function perEvent(
  cpu: CpuGroups,
  events: number,
  bareUsPerRequest: number | undefined,
  rawPgUsPerRow: number | undefined,
  eventsPerRequest: number,
): PerEvent | undefined {
  if (events <= 0) return undefined;
  const http = (cpu.http_workers! * 1e6) / events;
  const postgres = (cpu.postgres! * 1e6) / events;
  if (bareUsPerRequest === undefined || rawPgUsPerRow === undefined) {
    return { http_us: http, postgres_us: postgres, total_us: http + postgres, limit_us: NaN, ratio_to_limit: NaN };
  }
  const limit = bareUsPerRequest / eventsPerRequest + rawPgUsPerRow;
  return {
    http_us: http,
    postgres_us: postgres,
    total_us: http + postgres,
    limit_us: limit,
    ratio_to_limit: (http + postgres) / limit,
  };
}

/** Raw COPY into the events table, with the Postgres CPU it took (the store half of the limit). */
async function rawCopyMeasured(primary: number, databaseUrl: string, orgId: string) {
  // Read before the COPY connections close: an exited backend's CPU is no longer in /proc.
  const {
    rate,
    rows,
    measured: postgresSeconds,
  } = await rawCopyRate(
    databaseUrl,
    orgId,
    PAYLOAD,
    { writers: 2, batchRows: 1000, seconds: SECONDS },
    () => serverCpu(primary).postgres!,
  );
  return { rate, rows, pgUsPerRow: (postgresSeconds * 1e6) / rows };
}

function requireWrk(): void {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      process.stderr.write('wrk is not installed: apt-get install -y wrk\n');
      process.exit(1);
    }
  }
}

const countEvents = async (sql: Sql) => Number((await sql`select count(*) as n from events`)[0]!.n);

function workerRss(primary: number): number[] {
  return descendantsOf(primary)
    .filter((pid) => commandOf(pid).includes('main.js'))
    .map((pid) => Math.round(rssMb(pid)));
}

/** Runs `work` while measuring the server's CPU (by group) and the whole machine's. */
async function measured<T>(
  primary: number,
  work: () => Promise<T>,
): Promise<{ result: T; cpu: CpuGroups; peakRss: number[] }> {
  const before = serverCpu(primary);
  const machineBefore = machineBusySeconds();
  let peakRss: number[] = [];
  const sampler = setInterval(() => {
    const now = workerRss(primary);
    if (now.reduce((a, b) => a + b, 0) > peakRss.reduce((a, b) => a + b, 0)) peakRss = now;
  }, 250);
  try {
    const result = await work();
    const cpu = diffCpu(serverCpu(primary), before);
    // http_workers is a part of node_workers, not a group of its own.
    const serverTotal = cpu.primary! + cpu.node_workers! + cpu.postgres!;
    cpu.load_generator_and_rest = Math.max(0, machineBusySeconds() - machineBefore - serverTotal);
    return { result, cpu, peakRss };
  } finally {
    clearInterval(sampler);
  }
}

function rowsCheck(stored: number, answered: number, inFlightMax: number): string {
  // wrk stops counting at its deadline with up to one request per connection in flight: those may
  // be stored without wrk having seen the 2xx.
  if (stored >= answered && stored - answered <= inFlightMax) return `ok (${stored} stored, ${answered} answered 2xx)`;
  return `MISMATCH (${stored} stored, ${answered} answered 2xx)`;
}

async function main(): Promise<void> {
  requireWrk();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'triggers-bench-'));
  fs.chmodSync(dataDir, 0o755);
  const server = await TestServer.start({ dataDir, workers: WORKERS, env: { LOG_LEVEL: 'warn' } });
  const primary = server.proc.pid!;
  const rows: Row[] = [];
  const databaseUrl = socketUrl(path.join(dataDir, 'pg'), 'triggers');
  const sql = openDatabase(databaseUrl, { max: 4, name: 'bench' });
  let bare: ChildProcess | null = null;
  try {
    for (const [name, value] of PG_SETTINGS) {
      if (!/^[a-z_]+$/.test(name)) throw new Error(`BENCH_PG_SETTINGS: "${name}" is not a setting name`);
      await sql.unsafe(`alter system set ${name} = '${value.replace(/'/g, "''")}'`);
    }
    if (PG_SETTINGS.length > 0) await sql`select pg_reload_conf()`;
    const { key, orgId } = await createOrgWithKey(server.url, {
      name: 'bench',
      rate_limit_per_sec: 10_000_000,
      burst: 10_000_000,
    });
    const headers = { 'Content-Type': 'application/json', Authorization: `Bearer ${key}` };

    // The store half of the limit: raw COPY's Postgres CPU per row, measured first so the
    // single-event rows can print their ratio to the limit.
    let rawCopy: Awaited<ReturnType<typeof rawCopyMeasured>> | null = null;
    if (SCENARIOS.includes('single') || SCENARIOS.includes('batch')) {
      rawCopy = await rawCopyMeasured(primary, databaseUrl, orgId);
      rows.push({
        scenario: 'batch',
        target: 'raw COPY (2 writers x 1000 rows)',
        rps: rawCopy.rate / 1000,
        events_per_s: rawCopy.rate,
        latency_ms: { p50: 0, p99: 0 },
        errors: 0,
        cpu_us_per_row: rawCopy.pgUsPerRow,
      });
    }
    // The read-and-answer half: the bare server's CPU per request (its whole process tree).
    const bareUsPerRequest = new Map<number, number>();

    if (SCENARIOS.includes('single')) {
      const barePort = await freePort();
      bare = await startBareUws(barePort, WORKERS);
      for (const connections of CONNECTIONS) {
        const bareBefore = treeCpu(bare.pid!);
        const base = await wrkPost(`http://127.0.0.1:${barePort}/v1/events`, EVENT, headers, {
          connections,
          seconds: SECONDS,
        });
        const bareUs = ((treeCpu(bare.pid!) - bareBefore) * 1e6) / base.requests;
        bareUsPerRequest.set(connections, bareUs);
        rows.push({
          scenario: 'single',
          target: 'bare uWS',
          connections,
          rps: base.rps,
          latency_ms: base.latencyMs,
          errors: base.non2xx + base.socketErrors,
          cpu_us_per_request: bareUs,
        });
        const before = await countEvents(sql);
        const {
          result: full,
          cpu,
          peakRss,
        } = await measured(primary, () =>
          wrkPost(`${server.url}/v1/events`, EVENT, headers, { connections, seconds: SECONDS }),
        );
        await new Promise((resolve) => setTimeout(resolve, 500));
        const stored = (await countEvents(sql)) - before;
        rows.push({
          scenario: 'single',
          target: 'full server',
          connections,
          rps: full.rps,
          latency_ms: full.latencyMs,
          errors: full.non2xx + full.socketErrors,
          ratio: full.rps / base.rps,
          baseline: 'bare uWS',
          cpu_s: cpu,
          worker_rss_mb: peakRss,
          rows_check: rowsCheck(stored, full.requests - full.non2xx, connections),
          per_event: perEvent(cpu, stored, bareUs, rawCopy?.pgUsPerRow, 1),
        });
      }
      bare.kill('SIGTERM');
      bare = null;
    }

    if (SCENARIOS.includes('batch')) {
      const rawRate = rawCopy!.rate;
      const connections = 32;
      const before = await countEvents(sql);
      const {
        result: full,
        cpu,
        peakRss,
      } = await measured(primary, () =>
        wrkPost(`${server.url}/v1/events/batch`, BATCH, headers, { connections, seconds: SECONDS }),
      );
      await new Promise((resolve) => setTimeout(resolve, 500));
      const eventsPerSecond = full.rps * 100;
      const stored = (await countEvents(sql)) - before;
      // The bare per-request CPU at the connection count nearest this scenario's, when measured.
      const bareUs = [...bareUsPerRequest.entries()].sort(
        (a, b) => Math.abs(a[0] - connections) - Math.abs(b[0] - connections),
      )[0]?.[1];
      rows.push({
        scenario: 'batch',
        target: 'full server (100 events/request)',
        connections,
        rps: full.rps,
        events_per_s: eventsPerSecond,
        latency_ms: full.latencyMs,
        errors: full.non2xx + full.socketErrors,
        ratio: eventsPerSecond / rawRate,
        baseline: 'raw COPY',
        cpu_s: cpu,
        worker_rss_mb: peakRss,
        rows_check: rowsCheck(stored, (full.requests - full.non2xx) * 100, connections * 100),
        per_event: perEvent(cpu, stored, bareUs ?? 0, rawCopy!.pgUsPerRow, 100),
      });
    }

    if (SCENARIOS.includes('open')) {
      // Steady state, not a cold start: the first request of a key in each worker verifies it with
      // argon2 (~25 ms, by design) and code is not yet optimised; at 5 000 req/s those first
      // milliseconds alone would fill the top 1% when this scenario runs on its own.
      await wrkPost(`${server.url}/v1/events`, EVENT, headers, { connections: 32, seconds: 2 });
      // wrk stops with requests in flight; let them commit before counting.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const before = await countEvents(sql);
      const { result, cpu, peakRss } = await measured(primary, () =>
        openLoop(`${server.url}/v1/events`, EVENT, headers, RATE, SECONDS),
      );
      rows.push({
        scenario: 'open',
        target: `full server at ${RATE} req/s offered`,
        rps: result.ok / SECONDS,
        latency_ms: result.latencyMs,
        errors: result.errors,
        cpu_s: cpu,
        worker_rss_mb: peakRss,
        rows_check: rowsCheck((await countEvents(sql)) - before, result.ok, 0),
        extra: { statuses: result.statuses, sent: result.sent },
      });
    }

    if (SCENARIOS.includes('soak')) {
      // Memory over a long run: RSS of every HTTP worker sampled every 10 s under steady load.
      const soakSeconds = Number(process.env.BENCH_SOAK_SECONDS || 300);
      const samples: Array<{ t: number; rss_mb: number[] }> = [];
      const started = Date.now();
      const sampler = setInterval(
        () => samples.push({ t: Math.round((Date.now() - started) / 1000), rss_mb: workerRss(primary) }),
        10_000,
      );
      const before = await countEvents(sql);
      const { result: full, cpu } = await measured(primary, () =>
        wrkPost(`${server.url}/v1/events`, EVENT, headers, { connections: 64, seconds: soakSeconds }),
      );
      clearInterval(sampler);
      await new Promise((resolve) => setTimeout(resolve, 500));
      const first = samples[1]?.rss_mb ?? samples[0]?.rss_mb ?? [];
      const last = samples[samples.length - 1]?.rss_mb ?? [];
      const peak = samples.reduce<number[]>((max, s) => s.rss_mb.map((v, i) => Math.max(v, max[i] ?? 0)), []);
      rows.push({
        scenario: 'soak',
        target: `full server, ${soakSeconds} s at 64 connections`,
        connections: 64,
        rps: full.rps,
        latency_ms: full.latencyMs,
        errors: full.non2xx + full.socketErrors,
        cpu_s: cpu,
        worker_rss_mb: peak,
        rows_check: rowsCheck((await countEvents(sql)) - before, full.requests - full.non2xx, 64),
        extra: { rss_after_20s_mb: first, rss_at_end_mb: last, samples },
      });
    }

    if (SCENARIOS.includes('typed')) {
      // Side by side in one run: an org without event types (one Map look-up that misses) and an
      // org whose type has TYPED_SCHEMA, alternating so drift on the shared machine hits both.
      const typed = await createOrgWithKey(server.url, {
        name: 'typed',
        rate_limit_per_sec: 10_000_000,
        burst: 10_000_000,
      });
      const put = await call(server.url, 'PUT', '/v1/event-types/bench.typed', {
        key: typed.key,
        body: { schema: TYPED_SCHEMA },
      });
      if (put.status !== 201) throw new Error(`PUT /v1/event-types answered ${put.status}: ${put.text}`);
      const typedHeaders = { 'Content-Type': 'application/json', Authorization: `Bearer ${typed.key}` };
      const connections = 64;
      // Warm both paths (keys verified, schema compiled in every worker, code optimised).
      await wrkPost(`${server.url}/v1/events`, EVENT, headers, { connections, seconds: 2 });
      await wrkPost(`${server.url}/v1/events`, TYPED_EVENT, typedHeaders, { connections, seconds: 2 });
      await new Promise((resolve) => setTimeout(resolve, 500));
      const totals = {
        plain: { requests: 0, seconds: 0, cpu: 0, errors: 0 },
        typed: { requests: 0, seconds: 0, cpu: 0, errors: 0 },
      };
      for (let round = 0; round < TYPED_ROUNDS; round++) {
        for (const variant of ['plain', 'typed'] as const) {
          const before = await countEvents(sql);
          const body = variant === 'plain' ? EVENT : TYPED_EVENT;
          const { result, cpu, peakRss } = await measured(primary, () =>
            wrkPost(`${server.url}/v1/events`, body, variant === 'plain' ? headers : typedHeaders, {
              connections,
              seconds: SECONDS,
            }),
          );
          await new Promise((resolve) => setTimeout(resolve, 500));
          const stored = (await countEvents(sql)) - before;
          totals[variant].requests += result.requests;
          totals[variant].seconds += result.seconds;
          totals[variant].cpu += (cpu.http_workers! * 1e6) / Math.max(1, stored);
          totals[variant].errors += result.non2xx + result.socketErrors;
          rows.push({
            scenario: 'typed',
            target:
              variant === 'plain'
                ? `round ${round + 1}: org without event types`
                : `round ${round + 1}: type with a schema (5 properties, enum, format)`,
            connections,
            rps: result.rps,
            latency_ms: result.latencyMs,
            errors: result.non2xx + result.socketErrors,
            cpu_s: cpu,
            worker_rss_mb: peakRss,
            rows_check: rowsCheck(stored, result.requests - result.non2xx, connections),
          });
        }
      }
      const [checked] =
        await sql`select count(*)::int as n from events where org_id = ${typed.orgId} and schema_version = 1`;
      const plainRps = totals.plain.requests / totals.plain.seconds;
      const typedRps = totals.typed.requests / totals.typed.seconds;
      rows.push({
        scenario: 'typed',
        target: `all ${TYPED_ROUNDS} rounds: typed against plain`,
        connections,
        rps: typedRps,
        latency_ms: { p50: 0, p99: 0 },
        errors: totals.typed.errors,
        ratio: typedRps / plainRps,
        baseline: 'org without event types',
        extra: {
          plain_rps: plainRps,
          typed_rps: typedRps,
          typed_events_with_schema_version: checked!.n,
          http_worker_us_per_event: { plain: totals.plain.cpu / TYPED_ROUNDS, typed: totals.typed.cpu / TYPED_ROUNDS },
        },
      });
    }

    if (SCENARIOS.includes('drain')) {
      const consumer = await createOrgWithKey(server.url, {
        name: 'drain',
        rate_limit_per_sec: 10_000_000,
        burst: 10_000_000,
      });
      const consumerHeaders = { 'Content-Type': 'application/json', Authorization: `Bearer ${consumer.key}` };
      let consumed = 0;
      let stop = false;
      const drain = (async () => {
        let cursor: string | null = null;
        while (!stop) {
          const page: { status: number; text: string; body: any } = await call(
            server.url,
            'GET',
            `/v1/inbox?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
            { key: consumer.key },
          );
          if (page.status !== 200) throw new Error(`inbox answered ${page.status}: ${page.text}`);
          const ids = page.body.events.map((e: { id: string }) => e.id);
          if (ids.length > 0) {
            const acked = await call(server.url, 'POST', '/v1/ack', { key: consumer.key, body: { ids } });
            if (acked.status !== 200) throw new Error(`ack answered ${acked.status}`);
            consumed += ids.length;
          } else {
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
          cursor = page.body.next_cursor ?? cursor;
        }
      })();
      const {
        result: full,
        cpu,
        peakRss,
      } = await measured(primary, () =>
        wrkPost(`${server.url}/v1/events`, EVENT, consumerHeaders, { connections: 64, seconds: SECONDS }),
      );
      await new Promise((resolve) => setTimeout(resolve, 1000));
      stop = true;
      await drain;
      rows.push({
        scenario: 'drain',
        target: 'full server, ingest while a consumer drains',
        connections: 64,
        rps: full.rps,
        latency_ms: full.latencyMs,
        errors: full.non2xx + full.socketErrors,
        cpu_s: cpu,
        worker_rss_mb: peakRss,
        extra: { consumed_per_s: consumed / SECONDS, consumed },
      });
    }
  } finally {
    bare?.kill('SIGTERM');
    await sql.end({ timeout: 1 });
    await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }

  const table = [
    '| scenario | target | conns | req/s | events/s | p50 ms | p99 ms | errors | ratio | CPU s (workers / postgres / load gen+rest) | worker RSS MB | rows |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const cpu = r.cpu_s
      ? `${r.cpu_s.node_workers!.toFixed(1)} / ${r.cpu_s.postgres!.toFixed(1)} / ${r.cpu_s.load_generator_and_rest!.toFixed(1)}`
      : '';
    table.push(
      `| ${r.scenario} | ${r.target} | ${r.connections ?? ''} | ${Math.round(r.rps)} | ${r.events_per_s ? Math.round(r.events_per_s) : ''} | ${r.latency_ms.p50.toFixed(2)} | ${r.latency_ms.p99.toFixed(2)} | ${r.errors} | ${r.ratio ? `${r.ratio.toFixed(2)} of ${r.baseline}` : ''} | ${cpu} | ${r.worker_rss_mb?.join(', ') ?? ''} | ${r.rows_check ?? ''} |`,
    );
  }
  const split = [
    '| scenario | conns | ratio to baseline | HTTP workers µs/event | Postgres µs/event | total µs/event | limit µs/event (bare uWS per request + raw COPY Postgres per row) | ratio to limit |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    if (!r.per_event) continue;
    const e = r.per_event;
    split.push(
      `| ${r.scenario} | ${r.connections ?? ''} | ${r.ratio?.toFixed(2) ?? ''} of ${r.baseline} | ${e.http_us.toFixed(1)} | ${e.postgres_us.toFixed(1)} | ${e.total_us.toFixed(1)} | ${e.limit_us.toFixed(1)} | ${e.ratio_to_limit.toFixed(2)} |`,
    );
  }
  const bases = rows
    .filter((r) => r.cpu_us_per_request !== undefined || r.cpu_us_per_row !== undefined)
    .map((r) =>
      r.cpu_us_per_request !== undefined
        ? `bare uWS at ${r.connections} connections: ${r.cpu_us_per_request.toFixed(1)} µs CPU per request`
        : `raw COPY: ${r.cpu_us_per_row!.toFixed(1)} µs of Postgres CPU per row`,
    );
  table.push(
    '',
    'CPU per durable event (HTTP workers and Postgres, from /proc; the batch limit counts the bare per-request CPU once per 100 events):',
    '',
    ...split,
    '',
    ...bases.map((b) => `- ${b}`),
  );
  process.stdout.write(
    table.join('\n') +
      '\n\n' +
      JSON.stringify(
        {
          machine: { cpus: os.availableParallelism(), node: process.version },
          seconds: SECONDS,
          workers: WORKERS,
          rows,
        },
        null,
        2,
      ) +
      '\n',
  );
  if (rows.some((r) => r.rows_check?.startsWith('MISMATCH'))) {
    process.stderr.write('row count in Postgres does not match the 2xx answers\n');
    process.exit(1);
  }
}

main().catch((error) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
