/**
 * Inbox query benchmark: does a page of 100 stay fast on a large table?
 *
 * Loads EVENTS (default 5 000 000) events for 100 orgs into a throwaway embedded Postgres, spread
 * evenly over the last 30 days (31 daily partitions, plus the 7 ahead the server keeps), with
 * UNACKED_EVERY-th block (default 1 in 5, so 1 000 000) unacknowledged and the rest acked, then
 * times readInboxPage (the query the server runs) for several page shapes: from Node (round trip
 * on a Unix socket, including transfer of the rows) and as EXPLAIN ANALYZE execution time.
 *
 *   npm run bench:inbox                       # EVENTS=5000000 by default
 *   EVENTS=500000 npm run bench:inbox         # a quicker look
 *   BENCH_DIR=/tmp/inbox-5m npm run bench:inbox   # keep the loaded cluster; later runs only measure
 *
 * Baseline for the ratio: the same page read with the index made useless (a plain scan of the
 * org's rows sorted in memory), measured in the same run on the deep-cursor shape.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { openDatabase, type Sql } from '../src/db/connect.js';
import { startEmbeddedPostgres } from '../src/db/embedded.js';
import { migrate } from '../src/db/migrate.js';
import { ASC_START, DESC_START, type InboxOrder, type InboxPosition } from '../src/inbox/cursor.js';
import { inboxPageQuery, readInboxPage, type TypeFilter } from '../src/inbox/queries.js';
import { readWatermark } from '../src/ingest/sequence.js';

const EVENTS = Number(process.env.EVENTS || 5_000_000);
const ORGS = 100;
const UNACKED_EVERY = 5;
const DAYS = 30;
const PAGE = 100;
const SAMPLES = 40;
const CHUNK = 500_000;

const TYPES = [
  'user.signup',
  'user.login',
  'user.deleted',
  'order.created',
  'order.paid',
  'order.refunded',
  'invoice.sent',
  'invoice.paid',
  'page.viewed',
  'email.bounced',
];

function orgId(n: number): string {
  return '00000000-0000-4000-8000-' + n.toString(16).padStart(12, '0');
}

async function main(): Promise<void> {
  // BENCH_DIR keeps the loaded cluster for another run (measure again without reloading).
  const keep = process.env.BENCH_DIR;
  const dir = keep ?? fs.mkdtempSync(path.join(os.tmpdir(), 'triggers-bench-inbox-'));
  fs.mkdirSync(dir, { recursive: true });
  fs.chmodSync(dir, 0o755);
  const pg = await startEmbeddedPostgres(dir, (message) => console.log(message));
  const sql = openDatabase(pg.databaseUrl, { max: 2, name: 'bench-inbox' });
  try {
    await migrate(sql);
    await sql`alter system set max_wal_size = '8GB'`;
    await sql`alter system set checkpoint_timeout = '30min'`;
    await sql`select pg_reload_conf()`;
    const [existing] = await sql`select exists (select 1 from events) as loaded`;
    if (!existing!.loaded) {
      const started = performance.now();
      await load(sql);
      console.log(
        `loaded ${EVENTS} events (${EVENTS / UNACKED_EVERY} unacknowledged) for ${ORGS} orgs in ${((performance.now() - started) / 1000).toFixed(1)} s`,
      );
    }
    const [size] = await sql`select pg_size_pretty(sum(pg_total_relation_size(inhrelid))) as total,
      (select count(*) from pg_inherits where inhparent = 'events'::regclass) as partitions
      from pg_inherits where inhparent = 'events'::regclass`;
    console.log(`events: ${size!.total} in ${size!.partitions} partitions\n`);
    await measure(sql, path.join(dir, 'pg'));
  } finally {
    await sql.end({ timeout: 1 });
    await pg.stop();
    if (!keep) fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function load(sql: ReturnType<typeof openDatabase>): Promise<void> {
  const nowMs = Date.now();
  const startMs = nowMs - DAYS * 86_400_000;
  const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);
  await sql`select ensure_event_partitions(${day(startMs)}::date, ${day(nowMs + 7 * 86_400_000)}::date)`;
  const stepMs = (nowMs - startMs) / EVENTS;
  for (let lo = 0; lo < EVENTS; lo += CHUNK) {
    const hi = Math.min(EVENTS, lo + CHUNK) - 1;
    const t0 = performance.now();
    // Row i: org i % 100; blocks of 100 consecutive rows are unacked 1 in UNACKED_EVERY; ids are
    // UUIDv7 whose timestamp is received_at (as the server makes them); type from a hash.
    await sql`
      insert into events (org_id, id, seq, type, payload, dedup_id, occurred_at, received_at, acked_at)
      select
        ('00000000-0000-4000-8000-' || lpad(to_hex(i % ${ORGS}), 12, '0'))::uuid,
        (lpad(to_hex(ms), 12, '0') || '7' || substr(h, 1, 3) || '8' || substr(h, 4, 15))::uuid,
        -- Row i is its org's (i / ORGS + 1)th event: seq in insertion order, as the server numbers them.
        (i / ${ORGS} + 1)::bigint,
        case when abs(hashint8(i)) % 1000 = 0 then 'billing.disputed'
             else (${TYPES}::text[])[1 + abs(hashint8(i + 7)) % ${TYPES.length}] end,
        jsonb_build_object('user_id', i, 'plan', 'pro', 'amount', i % 1000, 'note', 'benchmark payload'),
        null,
        to_timestamp(ms / 1000.0) - interval '1 second',
        to_timestamp(ms / 1000.0),
        case when (i / 100) % ${UNACKED_EVERY} = 0 then null else to_timestamp(ms / 1000.0) + interval '1 minute' end
      from (
        select i, (${startMs}::bigint + floor(i * ${stepMs}::float8))::bigint as ms, md5(i::text) as h
        from generate_series(${lo}::bigint, ${hi}::bigint) as i
      ) as g`;
    console.log(`  rows ${lo}..${hi} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  await sql`vacuum analyze events`;
}

interface Shape {
  name: string;
  order: InboxOrder;
  filter: TypeFilter;
  /** 'start', or a position halfway through the org's unacked events in that order. */
  from: 'start' | 'deep';
}

const SHAPES: Shape[] = [
  { name: 'asc, first page', order: 'asc', filter: { kind: 'all' }, from: 'start' },
  { name: 'desc, first page', order: 'desc', filter: { kind: 'all' }, from: 'start' },
  { name: 'asc, deep cursor', order: 'asc', filter: { kind: 'all' }, from: 'deep' },
  { name: 'desc, deep cursor', order: 'desc', filter: { kind: 'all' }, from: 'deep' },
  { name: 'asc, type=user.* (30%)', order: 'asc', filter: { kind: 'prefix', prefix: 'user.' }, from: 'start' },
  { name: 'asc, type=user.*, deep cursor', order: 'asc', filter: { kind: 'prefix', prefix: 'user.' }, from: 'deep' },
  { name: 'desc, type=order.*', order: 'desc', filter: { kind: 'prefix', prefix: 'order.' }, from: 'start' },
  {
    name: 'asc, type=email.bounced (10%)',
    order: 'asc',
    filter: { kind: 'exact', type: 'email.bounced' },
    from: 'start',
  },
  {
    name: 'asc, type=billing.disputed (0.1%)',
    order: 'asc',
    filter: { kind: 'exact', type: 'billing.disputed' },
    from: 'start',
  },
  { name: 'asc, type=billing.* (0.1%)', order: 'asc', filter: { kind: 'prefix', prefix: 'billing.' }, from: 'start' },
];

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

async function deepPosition(
  sql: ReturnType<typeof openDatabase>,
  org: string,
  order: InboxOrder,
): Promise<InboxPosition> {
  const [count] = await sql`select count(*)::int as n from events where org_id = ${org} and acked_at is null`;
  const half = Math.floor(count!.n / 2);
  const rows =
    order === 'asc'
      ? await sql`select seq::text as seq, id from events where org_id = ${org} and acked_at is null order by seq offset ${half} limit 1`
      : await sql`select seq::text as seq, id from events where org_id = ${org} and acked_at is null order by seq desc offset ${half} limit 1`;
  return { seq: rows[0]!.seq, id: rows[0]!.id };
}

async function measure(sql: Sql, pgDir: string): Promise<void> {
  const orgs = Array.from({ length: SAMPLES }, (_, k) => orgId((k * 37) % ORGS));
  const deep = new Map<string, InboxPosition>();
  for (const org of new Set(orgs)) {
    deep.set(org + ':asc', await deepPosition(sql, org, 'asc'));
    deep.set(org + ':desc', await deepPosition(sql, org, 'desc'));
  }
  console.log(
    `page of ${PAGE} (+1 to know has_more), ${SAMPLES} samples per shape over ${new Set(orgs).size} orgs, after a warm-up pass`,
  );
  console.log(
    'node = readInboxPage round trip from Node; plan/exec = EXPLAIN ANALYZE planning and execution time (one org)',
  );
  console.log(
    'shape'.padEnd(40) +
      'node p50'.padStart(10) +
      'node p95'.padStart(10) +
      'node max'.padStart(10) +
      'plan'.padStart(10) +
      'exec'.padStart(10) +
      'rows'.padStart(6),
  );
  // Reference for the Node column: a trivial query's round trip on the same pool, right now.
  const trivial: number[] = [];
  for (let k = 0; k < SAMPLES * 2; k++) {
    const t0 = performance.now();
    await sql`select 1`;
    trivial.push(performance.now() - t0);
  }
  trivial.sort((a, b) => a - b);
  console.log(
    `select 1 round trip: p50 ${percentile(trivial, 0.5).toFixed(2)} ms, p95 ${percentile(trivial, 0.95).toFixed(2)} ms (machine load ${os.loadavg()[0]!.toFixed(1)} on ${os.availableParallelism()} cores)`,
  );
  const results: Array<{ name: string; p50: number; p95: number }> = [];
  for (const shape of SHAPES) {
    const query = (org: string) => ({
      orgId: org,
      order: shape.order,
      limit: PAGE + 1,
      filter: shape.filter,
      from: shape.from === 'deep' ? deep.get(org + ':' + shape.order)! : shape.order === 'asc' ? ASC_START : DESC_START,
    });
    for (const org of orgs) await readInboxPage(sql, query(org));
    const times: number[] = [];
    let rows = 0;
    for (const org of orgs) {
      const t0 = performance.now();
      rows = (await readInboxPage(sql, query(org))).length;
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    const plan =
      await sql`explain (analyze, buffers, format json) ${inboxPageQuery(sql, query(orgs[1]!), await readWatermark(sql)) as any}`;
    const exec = (plan[0] as any)['QUERY PLAN'][0]['Execution Time'] as number;
    const planning = (plan[0] as any)['QUERY PLAN'][0]['Planning Time'] as number;
    results.push({ name: shape.name, p50: percentile(times, 0.5), p95: percentile(times, 0.95) });
    console.log(
      shape.name.padEnd(40) +
        fmt(percentile(times, 0.5)) +
        fmt(percentile(times, 0.95)) +
        fmt(times[times.length - 1]!) +
        fmt(planning) +
        fmt(exec) +
        String(rows).padStart(6),
    );
    if (process.env.SHOW_PLANS) {
      const text =
        await sql`explain (analyze, buffers) ${inboxPageQuery(sql, query(orgs[1]!), await readWatermark(sql)) as any}`;
      console.log(text.map((r: any) => '    ' + r['QUERY PLAN']).join('\n'));
    }
  }

  // Baseline: the same deep-cursor page with index scans switched off (a fresh, unprepared
  // connection, so no cached plan hides the setting): what the page costs without the index.
  const org = orgs[2]!;
  const from = deep.get(org + ':asc')!;
  const noIndex = postgres({
    host: pgDir,
    port: 5432,
    user: 'postgres',
    database: 'triggers',
    max: 1,
    prepare: false,
    onnotice: () => {},
    connection: { enable_indexscan: 'off', enable_bitmapscan: 'off', enable_indexonlyscan: 'off' } as Record<
      string,
      string
    >,
  }) as unknown as Sql;
  const baseline: number[] = [];
  try {
    for (let k = 0; k < 3; k++) {
      const t0 = performance.now();
      await readInboxPage(noIndex, { orgId: org, order: 'asc', limit: PAGE + 1, filter: { kind: 'all' }, from });
      baseline.push(performance.now() - t0);
    }
  } finally {
    await noIndex.end({ timeout: 1 });
  }
  baseline.sort((a, b) => a - b);
  const deepAsc = results.find((r) => r.name === 'asc, deep cursor')!;
  console.log(
    `\nbaseline without index scans (asc, deep cursor, median of 3): ${baseline[1]!.toFixed(1)} ms; with the index: ${deepAsc.p50.toFixed(2)} ms (${(baseline[1]! / deepAsc.p50).toFixed(0)}x faster)`,
  );
  const worst = Math.max(...results.map((r) => r.p95));
  console.log(`worst p95 over all shapes: ${worst.toFixed(2)} ms (target < 20 ms): ${worst < 20 ? 'PASS' : 'FAIL'}`);
}

function fmt(ms: number): string {
  return (ms.toFixed(2) + ' ms').padStart(10);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
