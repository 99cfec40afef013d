import { execFileSync } from 'node:child_process';
import os from 'node:os';
import postgres from 'postgres';
import { Pool } from 'undici';
import { createOrgWithKey } from '../test/helpers/api.js';
import { citusUnavailable, TestCitus } from '../test/helpers/citus.js';
import { TestServer } from '../test/helpers/server.js';
import { hasPostgres15, SystemPostgres } from '../test/helpers/system-postgres.js';
import { rawCopyRate } from './raw-copy.js';
import { wrkPost, type WrkResult } from './wrk.js';

/**
 * The same server on plain PostgreSQL 15 and on a local Citus cluster (a coordinator and two
 * workers, Citus 13 on the same PostgreSQL 15 binaries), one after the other in one run, with the
 * same measures on each: raw COPY into events through the one endpoint (the database's own
 * ceiling), the full server's single events and batches of 100 (one org, then 16 orgs), inbox
 * reads, and the connections the server's processes hold on every node.
 *
 * One box proves correctness and shape, not speed: the three Citus nodes share this machine's
 * cores and disk with the server and the load generator, so Citus here pays its coordination
 * (routing, two-phase commit across workers, one more network hop) without the extra machines it
 * exists to add. Read the Citus/plain column as the cost of that coordination on one box, never as
 * what a real cluster would do.
 *
 *   CITUS_DIR=/work/shared/citus npm run bench:citus
 *   BENCH_SECONDS=4 npm run bench:citus       # shorter runs (inbox reads take 5/8 of it)
 *
 * Both databases: default settings, except what cluster.sh sets on the Citus nodes
 * (max_connections = 300, max_prepared_transactions = 300, wal_level = logical).
 */
const SECONDS = Number(process.env.BENCH_SECONDS || 8);
const INBOX_SECONDS = Math.max(2, Math.round((SECONDS * 5) / 8));
const WORKERS = Number(process.env.WORKERS || os.availableParallelism());
const MANY_ORGS = 16;
const INBOX_EVENTS = 20_000;
const INBOX_CLIENTS = 8;
const SAMPLE_EVERY_MS = 500;

const PAYLOAD = {
  user_id: 12345,
  email: 'someone@example.com',
  plan: 'pro',
  tags: ['a', 'b', 'c'],
  amount: 49.5,
  note: 'x'.repeat(120),
};
const EVENT = JSON.stringify({ type: 'bench.event', payload: PAYLOAD });
const BATCH = JSON.stringify({
  events: Array.from({ length: 100 }, () => ({ type: 'bench.batch', payload: PAYLOAD })),
});
const JSON_HEADERS = { 'Content-Type': 'application/json' };

type Kind = 'plain' | 'citus';

interface Measure {
  measure: string;
  unit: string;
  value: number;
  detail?: Record<string, unknown>;
}

/** Client backends on one node, by application (Citus's own gpid suffix removed) and state. */
interface NodeConnections {
  node: string;
  total: number;
  by_application: Record<string, number>;
}

interface DatabaseResult {
  kind: Kind;
  database: string;
  measures: Measure[];
  connections: { peak_under_load: NodeConnections[]; after_load: NodeConnections[] };
  server_errors: string[];
}

interface Database {
  kind: Kind;
  description: string;
  url: string;
  /** Every node's URL, the one the server talks to first. */
  nodes: Array<{ name: string; url: string }>;
  stop(): Promise<void>;
}

function requireTools(): void {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT')
      throw new Error('wrk is not installed: apt-get install -y wrk');
  }
  if (!hasPostgres15())
    throw new Error('PostgreSQL 15 is not installed (package postgresql-15; ../shared/citus/install.sh installs it)');
  const reason = citusUnavailable();
  if (reason) throw new Error(reason);
}

async function startPlain(): Promise<Database> {
  const pg = await SystemPostgres.start();
  return {
    kind: 'plain',
    description: 'PostgreSQL 15 (Debian postgresql-15), one instance, default settings',
    url: pg.url,
    nodes: [{ name: `postgres :${pg.port}`, url: pg.url }],
    stop: () => pg.stop(),
  };
}

async function startCitus(): Promise<Database> {
  const citus = await TestCitus.start();
  await citus.query.end({ timeout: 1 });
  const workerUrl = (port: number) => `postgres://postgres@127.0.0.1:${port}/postgres`;
  return {
    kind: 'citus',
    description: 'Citus 13.2 on PostgreSQL 15: coordinator + 2 workers on this box',
    url: citus.url,
    nodes: [
      { name: `coordinator :${citus.port}`, url: citus.url },
      ...citus.workerPorts.map((port, i) => ({ name: `worker ${i + 1} :${port}`, url: workerUrl(port) })),
    ],
    stop: () => citus.destroy(),
  };
}

const CONNECTIONS_QUERY = `
  select regexp_replace(coalesce(nullif(application_name, ''), '(none)'), ' gpid=[0-9]+', '') || ' (' || coalesce(state, '?') || ')' as app, count(*)::int as n
  from pg_stat_activity
  where backend_type = 'client backend' and pid <> pg_backend_pid()
  group by 1 order by 1`;

async function nodeConnections(name: string, sql: postgres.Sql): Promise<NodeConnections> {
  const rows = await sql.unsafe(CONNECTIONS_QUERY);
  const byApplication: Record<string, number> = {};
  for (const row of rows) byApplication[row.app as string] = row.n as number;
  return { node: name, total: rows.reduce((sum, row) => sum + (row.n as number), 0), by_application: byApplication };
}

/** Samples every node's client backends while `work` runs; keeps each node's busiest sample. */
async function peakConnections<T>(
  monitors: Array<{ name: string; sql: postgres.Sql }>,
  work: () => Promise<T>,
): Promise<{ result: T; peak: NodeConnections[] }> {
  const peak = new Map<string, NodeConnections>();
  let sampleError: unknown = null;
  let sampling = Promise.resolve();
  // One sample at a time, in order; a failed one is kept and thrown after the work.
  const sample = () => {
    sampling = sampling
      .then(async () => {
        for (const monitor of monitors) {
          const now = await nodeConnections(monitor.name, monitor.sql);
          if (now.total > (peak.get(monitor.name)?.total ?? -1)) peak.set(monitor.name, now);
        }
      })
      .catch((error) => {
        sampleError ??= error;
      });
  };
  const timer = setInterval(sample, SAMPLE_EVERY_MS);
  let result: T;
  try {
    result = await work();
  } finally {
    clearInterval(timer);
    await sampling;
  }
  if (sampleError) throw sampleError;
  return { result, peak: monitors.map((m) => peak.get(m.name) ?? { node: m.name, total: 0, by_application: {} }) };
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

/** Stored vs answered, as bench/load.ts checks it: wrk stops with up to `inFlight` rows it did not see answered. */
function rowsCheck(stored: number, answered: number, inFlight: number): string {
  return stored >= answered && stored - answered <= inFlight
    ? `ok (${stored} stored, ${answered} answered 2xx)`
    : `MISMATCH (${stored} stored, ${answered} answered 2xx)`;
}

/** Loads INBOX_EVENTS unacknowledged events into the org through the batch endpoint. */
async function loadInbox(pool: Pool, key: string): Promise<void> {
  let sent = 0;
  const loader = async () => {
    while (sent < INBOX_EVENTS) {
      sent += 100;
      const response = await pool.request({
        path: '/v1/events/batch',
        method: 'POST',
        body: BATCH,
        headers: { ...JSON_HEADERS, authorization: `Bearer ${key}` },
      });
      const text = await response.body.text();
      if (response.statusCode !== 200)
        throw new Error(`batch for the inbox answered ${response.statusCode}: ${text.slice(0, 300)}`);
    }
  };
  await Promise.all(Array.from({ length: 4 }, loader));
}

/**
 * INBOX_CLIENTS consumers, each paging through the org's inbox (limit=100) by its cursor and
 * starting over at the end, acknowledging nothing, for INBOX_SECONDS.
 */
async function inboxReads(pool: Pool, key: string) {
  const deadline = performance.now() + INBOX_SECONDS * 1000;
  const times: number[] = [];
  let errors = 0;
  let events = 0;
  let lastError = '';
  const consumer = async () => {
    let cursor = '';
    while (performance.now() < deadline) {
      const started = performance.now();
      const response = await pool.request({
        path: `/v1/inbox?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
        method: 'GET',
        headers: { authorization: `Bearer ${key}` },
      });
      const text = await response.body.text();
      times.push(performance.now() - started);
      if (response.statusCode !== 200) {
        errors++;
        lastError = `${response.statusCode} ${text.slice(0, 200)}`;
        cursor = '';
        continue;
      }
      // Counted and followed without parsing 40 KB of JSON per page: the client stays cheap.
      for (let at = text.indexOf('{"id":"'); at !== -1; at = text.indexOf('{"id":"', at + 7)) events++;
      const tail = /"next_cursor":"([^"]*)","has_more":(true|false)\}$/.exec(text);
      cursor = tail && tail[2] === 'true' ? tail[1]! : '';
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: INBOX_CLIENTS }, consumer));
  const elapsed = (performance.now() - started) / 1000;
  times.sort((a, b) => a - b);
  return {
    rps: times.length / elapsed,
    events_per_s: events / elapsed,
    p50: percentile(times, 0.5),
    p99: percentile(times, 0.99),
    errors,
    last_error: lastError,
  };
}

/** Starts the server on the database, measures, stops it; its "level":50 lines come back too. */
async function measureDatabase(db: Database): Promise<DatabaseResult> {
  const server = await TestServer.start({ databaseUrl: db.url, workers: WORKERS, env: { LOG_LEVEL: 'warn' } });
  let measured: Pick<DatabaseResult, 'measures' | 'connections'>;
  try {
    measured = await measureServer(db, server);
  } finally {
    await server.stop();
  }
  const errors = server.output.split('\n').filter((line) => line.includes('"level":50'));
  if (errors.length > 0)
    process.stderr.write(
      `server on ${db.kind}: ${errors.length} error lines ("level":50), the first:\n${errors.slice(0, 5).join('\n')}\n`,
    );
  return { kind: db.kind, database: db.description, ...measured, server_errors: errors };
}

async function measureServer(
  db: Database,
  server: TestServer,
): Promise<Pick<DatabaseResult, 'measures' | 'connections'>> {
  const monitors = db.nodes.map((node) => ({
    name: node.name,
    sql: postgres(node.url, { max: 1, onnotice: () => {}, connection: { application_name: 'bench-monitor' } }),
  }));
  const coordinator = monitors[0]!.sql;
  const http = new Pool(server.url, { connections: INBOX_CLIENTS });
  const measures: Measure[] = [];
  const countEvents = async () => Number((await coordinator`select count(*) as n from events`)[0]!.n);
  try {
    const limits = { rate_limit_per_sec: 10_000_000, burst: 10_000_000 };
    const raw = await createOrgWithKey(server.url, { name: 'raw copy', ...limits });
    const orgs = [];
    for (let i = 0; i < MANY_ORGS; i++) orgs.push(await createOrgWithKey(server.url, { name: `load ${i}`, ...limits }));
    const inbox = await createOrgWithKey(server.url, { name: 'inbox', ...limits });
    const oneOrg = [`Bearer ${orgs[0]!.key}`];
    const manyOrgs = orgs.map((org) => `Bearer ${org.key}`);

    // Every key verified (argon2, by design ~25 ms) in every HTTP worker, and the code optimised,
    // before anything is timed.
    await wrkPost(`${server.url}/v1/events`, EVENT, JSON_HEADERS, {
      connections: 32,
      seconds: 2,
      authorizations: manyOrgs,
    });

    const copy = await rawCopyRate(db.url, raw.orgId, PAYLOAD, { writers: 2, batchRows: 1000, seconds: SECONDS });
    measures.push({
      measure: 'raw COPY into events, 2 writers x 1000 rows (binary)',
      unit: 'rows/s',
      value: copy.rate,
      detail: { rows: copy.rows },
    });

    const orgIds = orgs.map((org) => org.orgId);
    // Each org's highest seq: an org whose number moved during a run was written in it.
    const lastSeqs = async () =>
      new Map(
        (
          await coordinator`select org_id, max(seq) as last_seq from events where org_id = any(${orgIds}::uuid[]) group by org_id`
        ).map((row) => [row.org_id as string, Number(row.last_seq)]),
      );
    const ingest = async (
      path: string,
      body: string,
      connections: number,
      authorizations: string[],
      eventsPerRequest: number,
    ) => {
      await new Promise((resolve) => setTimeout(resolve, 500));
      const before = await countEvents();
      const seqsBefore = await lastSeqs();
      const result: WrkResult = await wrkPost(`${server.url}${path}`, body, JSON_HEADERS, {
        connections,
        seconds: SECONDS,
        authorizations,
      });
      // wrk stops with requests in flight; let them commit before counting.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const stored = (await countEvents()) - before;
      const orgsWritten = [...(await lastSeqs())].filter(([org, seq]) => seq > (seqsBefore.get(org) ?? 0)).length;
      return {
        ...result,
        orgs_written: orgsWritten,
        rows_check: rowsCheck(
          stored,
          (result.requests - result.non2xx) * eventsPerRequest,
          connections * eventsPerRequest,
        ),
      };
    };
    const { peak } = await peakConnections(monitors, async () => {
      for (const [label, authorizations] of [
        ['1 org', oneOrg],
        [`${MANY_ORGS} orgs`, manyOrgs],
      ] as const) {
        const single = await ingest('/v1/events', EVENT, 64, [...authorizations], 1);
        const detail = {
          requests: single.requests,
          errors: single.non2xx + single.socketErrors,
          orgs_written: single.orgs_written,
          rows_check: single.rows_check,
        };
        measures.push({
          measure: `single events, 64 conns, ${label}`,
          unit: 'req/s',
          value: single.rps,
          detail: { ...detail, latency_ms: single.latencyMs },
        });
        measures.push({ measure: `single events, 64 conns, ${label}: p50`, unit: 'ms', value: single.latencyMs.p50 });
        measures.push({ measure: `single events, 64 conns, ${label}: p99`, unit: 'ms', value: single.latencyMs.p99 });
      }
      for (const [label, authorizations] of [
        ['1 org', oneOrg],
        [`${MANY_ORGS} orgs`, manyOrgs],
      ] as const) {
        const batch = await ingest('/v1/events/batch', BATCH, 32, [...authorizations], 100);
        measures.push({
          measure: `batches of 100, 32 conns, ${label}`,
          unit: 'events/s',
          value: batch.rps * 100,
          detail: {
            requests: batch.requests,
            errors: batch.non2xx + batch.socketErrors,
            orgs_written: batch.orgs_written,
            latency_ms: batch.latencyMs,
            rows_check: batch.rows_check,
          },
        });
      }
    });
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const afterLoad = await Promise.all(monitors.map((m) => nodeConnections(m.name, m.sql)));

    await loadInbox(http, inbox.key);
    const unacked = Number(
      (await coordinator`select count(*) as n from events where org_id = ${inbox.orgId} and acked_at is null`)[0]!.n,
    );
    const reads = await inboxReads(http, inbox.key);
    measures.push({
      measure: `inbox reads, GET limit=100, ${INBOX_CLIENTS} clients, ${unacked} unacked`,
      unit: 'req/s',
      value: reads.rps,
      detail: reads,
    });
    measures.push({ measure: 'inbox reads: p50', unit: 'ms', value: reads.p50 });
    measures.push({ measure: 'inbox reads: p99', unit: 'ms', value: reads.p99 });

    return { measures, connections: { peak_under_load: peak, after_load: afterLoad } };
  } finally {
    await http.close();
    await Promise.all(monitors.map((m) => m.sql.end({ timeout: 1 })));
  }
}

async function run(start: () => Promise<Database>): Promise<DatabaseResult> {
  const db = await start();
  try {
    return await measureDatabase(db);
  } finally {
    await db.stop();
  }
}

function formatValue(value: number, unit: string): string {
  return unit === 'ms' ? value.toFixed(2) : String(Math.round(value));
}

function connectionLines(title: string, nodes: NodeConnections[]): string[] {
  return [
    title,
    ...nodes.map(
      (n) =>
        `  ${n.node}: ${n.total} (${
          Object.entries(n.by_application)
            .map(([app, count]) => `${app} ${count}`)
            .join(', ') || 'none'
        })`,
    ),
  ];
}

async function main(): Promise<void> {
  requireTools();
  const plain = await run(startPlain);
  const citus = await run(startCitus);

  const table = [
    '| measure | unit | plain Postgres | Citus (coordinator + 2 workers) | Citus/plain |',
    '|---|---|---|---|---|',
  ];
  const rows = plain.measures.map((p) => {
    const c = citus.measures.find((m) => m.measure === p.measure)!;
    return {
      measure: p.measure,
      unit: p.unit,
      plain: p.value,
      citus: c.value,
      ratio: c.value / p.value,
      plain_detail: p.detail,
      citus_detail: c.detail,
    };
  });
  for (const r of rows)
    table.push(
      `| ${r.measure} | ${r.unit} | ${formatValue(r.plain, r.unit)} | ${formatValue(r.citus, r.unit)} | ${r.ratio.toFixed(2)} |`,
    );
  const out = [
    `plain: ${plain.database}`,
    `citus: ${citus.database}`,
    `server: ${WORKERS} HTTP workers (WORKERS), default settings otherwise; ${SECONDS} s per run (inbox reads ${INBOX_SECONDS} s); one box: shape, not speed`,
    '',
    ...table,
    '',
    `Client backends (pg_stat_activity, by application_name and state; the bench's own monitor excluded), server with ${WORKERS} HTTP workers + 1 delivery worker:`,
    ...connectionLines('plain, busiest sample during the ingest runs:', plain.connections.peak_under_load),
    ...connectionLines('plain, 1 s after the ingest runs:', plain.connections.after_load),
    ...connectionLines('citus, busiest sample during the ingest runs:', citus.connections.peak_under_load),
    ...connectionLines('citus, 1 s after the ingest runs:', citus.connections.after_load),
    '',
    `server error lines ("level":50): plain ${plain.server_errors.length}, citus ${citus.server_errors.length}`,
  ];
  process.stdout.write(
    out.join('\n') +
      '\n\n' +
      JSON.stringify(
        {
          machine: { cpus: os.availableParallelism(), node: process.version },
          seconds: SECONDS,
          inbox_seconds: INBOX_SECONDS,
          workers: WORKERS,
          databases: { plain: plain.database, citus: citus.database },
          rows,
          connections: { plain: plain.connections, citus: citus.connections },
          server_errors: { plain: plain.server_errors, citus: citus.server_errors },
        },
        null,
        2,
      ) +
      '\n',
  );
  const mismatched = rows.filter(
    (r) =>
      String(r.plain_detail?.rows_check ?? '').startsWith('MISMATCH') ||
      String(r.citus_detail?.rows_check ?? '').startsWith('MISMATCH'),
  );
  if (mismatched.length > 0) {
    process.stderr.write(
      `row count in Postgres does not match the 2xx answers: ${mismatched.map((r) => r.measure).join('; ')}\n`,
    );
    process.exit(1);
  }
}

main().catch((error) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
