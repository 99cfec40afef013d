/**
 * What a dedup flush costs, before and after issue 14 (docs/PERFORMANCE.md, "Dedup flush"):
 *
 *   npm run build --silent && node dist/bench/dedup-flush.js            # 5 s per run
 *   DEDUP_BENCH_SECONDS=10 node dist/bench/dedup-flush.js
 *   DEDUP_BENCH_METHODS=before,now,arrays,recordset node dist/bench/dedup-flush.js
 *
 * Two writers (as a worker's two flush slots) write batches of 100 and 1000 events, every one with
 * a new dedup_id, into the server's schema on a throwaway embedded Postgres:
 *   - before:   sql.begin { claim in event_dedup; COPY through the client's .writable() }, the
 *               former dedup flush (exposed to porsager/postgres#1173; here the data is always good);
 *   - now:      flushWithDedup, one autocommit statement (src/ingest/dedup-flush.ts);
 *   - arrays, recordset: the same statement with the rows sent other ways (dedup-flush-variants.ts);
 *   - firehose: the same rows without dedup_id through CopyPool (one autocommit COPY), for scale.
 * Runs alternate (before, now, firehose, then reversed) so drift on a shared machine hits all
 * alike. Prints rows/s, the client's CPU and the Postgres backends' CPU per row, and now/before.
 */
import fs from 'node:fs';
import { openDatabase, type Queryable, type Sql } from '../src/db/connect.js';
import { CopyPool } from '../src/db/copy-pool.js';
import { ensurePartitions, migrate } from '../src/db/migrate.js';
import { wireTarget } from '../src/db/wire.js';
import { isoMs, uuidv7 } from '../src/ids.js';
import { COPY_EVENTS, encodeCopyRows } from '../src/ingest/batcher.js';
import { flushWithDedup, type PendingFlushRow } from '../src/ingest/dedup-flush.js';
import { validateEvent } from '../src/ingest/validate.js';
import { TestPostgres } from '../test/helpers/postgres.js';
import { viaArrays, viaRecordset } from './dedup-flush-variants.js';

const SECONDS = Number(process.env.DEDUP_BENCH_SECONDS) || 5;
const WRITERS = 2;
const WINDOW_HOURS = 24;
const ORG = '01a203cf-9446-7048-8cfe-8396fa4abc3e';
// About 250 bytes serialised, as in DESIGN.md's ingest table.
const PAYLOAD = {
  user_id: 123456,
  email: 'someone@example.com',
  plan: 'pro',
  note: 'a "quoted" word and a \\ slash',
  tags: ['a', 'b', 'c'],
  amount: 1999,
  currency: 'EUR',
  ok: true,
  at: '2026-01-01T00:00:00.000Z',
};

type Method = 'before' | 'now' | 'arrays' | 'recordset' | 'firehose';
let sequence = 0;

const ignore = () => {};

function batchOf(size: number, withDedup: boolean): PendingFlushRow[] {
  const now = Date.now();
  const receivedAt = isoMs(now);
  return Array.from({ length: size }, () => ({
    orgId: ORG,
    id: uuidv7(now),
    receivedAt,
    resolve: ignore,
    reject: ignore,
    event: validateEvent(
      { type: 'bench.dedup', payload: PAYLOAD, ...(withDedup ? { dedup_id: `bench-${sequence++}` } : {}) },
      '',
    ),
  }));
}

/** The dedup flush as it was before issue 14 (src/ingest/batcher.ts at e361c9c), new keys only. */
async function flushBefore(sql: Sql, rows: PendingFlushRow[]): Promise<void> {
  await sql.begin(async (tx) => {
    const won = await tx`
      insert into event_dedup (org_id, dedup_id, event_id, received_at)
      select * from unnest(${rows.map((r) => r.orgId)}::uuid[], ${rows.map((r) => r.event.dedupId!)}::text[],
                           ${rows.map((r) => r.id)}::uuid[], ${rows.map((r) => r.receivedAt)}::timestamptz[])
      on conflict (org_id, dedup_id) do update
        set event_id = excluded.event_id, received_at = excluded.received_at
        where event_dedup.received_at < now() - make_interval(hours => ${WINDOW_HOURS})
      returning event_id`;
    const winners = new Set(won.map((row) => row.event_id as string));
    await copyRows(
      tx,
      rows.filter((row) => winners.has(row.id)),
    );
  });
}

async function copyRows(tx: Queryable, rows: PendingFlushRow[]): Promise<void> {
  const writable = await tx.unsafe(COPY_EVENTS).writable();
  await new Promise<void>((resolve, reject) => {
    writable.once('error', reject);
    writable.once('finish', resolve);
    writable.end(encodeCopyRows(rows));
  });
}

function backendCpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // a backend that has gone away
    }
  }
  return ticks / 100; // USER_HZ
}

async function run(method: Method, batchRows: number, sql: Sql, copyPool: CopyPool, admin: Sql) {
  const write =
    method === 'before'
      ? (rows: PendingFlushRow[]) => flushBefore(sql, rows)
      : method === 'now'
        ? (rows: PendingFlushRow[]) => flushWithDedup(sql, rows, WINDOW_HOURS, ignore)
        : method === 'arrays'
          ? (rows: PendingFlushRow[]) => viaArrays(sql, rows, WINDOW_HOURS)
          : method === 'recordset'
            ? (rows: PendingFlushRow[]) => viaRecordset(sql, rows, WINDOW_HOURS)
            : (rows: PendingFlushRow[]) => copyPool.copy(COPY_EVENTS, encodeCopyRows(rows)).then(() => undefined);
  // Warm up: open the connections, prepare the statements.
  await Promise.all(Array.from({ length: WRITERS }, () => write(batchOf(batchRows, method !== 'firehose'))));
  const pids = (
    await admin`select pid from pg_stat_activity where application_name in ('bench-dedup', 'bench-firehose')`
  ).map((row) => row.pid as number);
  const serverBefore = backendCpuSeconds(pids);
  const clientBefore = process.cpuUsage();
  const started = performance.now();
  const deadline = started + SECONDS * 1000;
  let rows = 0;
  await Promise.all(
    Array.from({ length: WRITERS }, async () => {
      while (performance.now() < deadline) {
        await write(batchOf(batchRows, method !== 'firehose'));
        rows += batchRows;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const client = process.cpuUsage(clientBefore);
  return {
    rowsPerSecond: rows / seconds,
    clientUsPerRow: (client.user + client.system) / rows,
    serverUsPerRow: ((backendCpuSeconds(pids) - serverBefore) * 1e6) / rows,
  };
}

async function main(): Promise<void> {
  const pg = await TestPostgres.start();
  const url = await pg.createDatabase('dedup_bench');
  const admin = pg.connect('dedup_bench');
  await migrate(admin);
  await ensurePartitions(admin);
  const sql = openDatabase(url, { max: WRITERS, name: 'bench-dedup' });
  const copyPool = new CopyPool(wireTarget(url, { application_name: 'bench-firehose' }), WRITERS);
  const order: Method[] = (process.env.DEDUP_BENCH_METHODS?.split(',') as Method[] | undefined) ?? [
    'before',
    'now',
    'firehose',
  ];
  try {
    for (const batchRows of [100, 1000]) {
      const results = new Map<Method, Array<Awaited<ReturnType<typeof run>>>>();
      for (const round of [order, [...order].reverse()]) {
        for (const method of round) {
          const result = await run(method, batchRows, sql, copyPool, admin);
          results.set(method, [...(results.get(method) ?? []), result]);
        }
      }
      const mean = (method: Method, field: 'rowsPerSecond' | 'clientUsPerRow' | 'serverUsPerRow') =>
        results.get(method)!.reduce((sum, r) => sum + r[field], 0) / results.get(method)!.length;
      for (const method of order) {
        console.log(
          `batch ${String(batchRows).padStart(4)}  ${method.padEnd(8)}  ${Math.round(mean(method, 'rowsPerSecond')).toString().padStart(6)} rows/s` +
            `  client ${mean(method, 'clientUsPerRow').toFixed(1).padStart(5)} µs/row  Postgres ${mean(method, 'serverUsPerRow').toFixed(1).padStart(5)} µs/row` +
            `  (runs: ${results
              .get(method)!
              .map((r) => Math.round(r.rowsPerSecond))
              .join(', ')})`,
        );
      }
      console.log(
        `batch ${String(batchRows).padStart(4)}  now/before: ${(mean('now', 'rowsPerSecond') / mean('before', 'rowsPerSecond')).toFixed(2)}× rows/s, ` +
          `${(mean('now', 'clientUsPerRow') / mean('before', 'clientUsPerRow')).toFixed(2)}× client CPU, ` +
          `${(mean('now', 'serverUsPerRow') / mean('before', 'serverUsPerRow')).toFixed(2)}× Postgres CPU per row`,
      );
    }
  } finally {
    copyPool.close();
    await sql.end({ timeout: 1 });
    await admin.end({ timeout: 1 });
    await pg.stop();
  }
}

await main();
