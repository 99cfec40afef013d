/**
 * What acknowledging an event costs Postgres on a schema: 200 000 events of one org, acked 1 000
 * at a time with the inbox's UPDATE, on one connection; backend CPU from /proc.
 *
 *   npm run build && node dist/bench/ack-cost.js                 # this checkout's sql/
 *   ACK_BENCH_SQL_DIR=/path/to/other/checkout/sql node dist/bench/ack-cost.js
 *
 * The second form measures another version's migrations with the same script: an A/B of the
 * indexes an acknowledged row enters (docs/PERFORMANCE.md, "Webhook delivery").
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openDatabase } from '../src/db/connect.js';
import { startEmbeddedPostgres } from '../src/db/embedded.js';
import { SQL_DIR } from '../src/db/migrate.js';

const EVENTS = 200_000;
const ACK_BATCH = 1_000;
const ORG = '0193aaaa-0000-7000-8000-000000000001';

function backendCpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // clock ticks (USER_HZ = 100 on Linux)
}

async function main(): Promise<void> {
  const sqlDir = process.env.ACK_BENCH_SQL_DIR || SQL_DIR;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'triggers-ack-'));
  fs.chmodSync(dir, 0o755);
  const pg = await startEmbeddedPostgres(dir, () => {});
  const db = openDatabase(pg.databaseUrl, { max: 1, name: 'ack-cost' });
  try {
    for (const file of fs
      .readdirSync(sqlDir)
      .filter((name) => /^\d{3}_.*\.sql$/.test(name))
      .sort()) {
      await db.unsafe(fs.readFileSync(path.join(sqlDir, file), 'utf8'));
    }
    await db`select ensure_event_partitions(current_date - 1, current_date + 1)`;
    for (let done = 0; done < EVENTS; done += 10_000) {
      await db`insert into events (org_id, id, type, payload, received_at)
               select ${ORG}::uuid, gen_random_uuid(), 'ack.cost', '{"a":1}', now() from generate_series(1, 10000)`;
    }
    await db`vacuum analyze events`;
    const ids = (await db`select id from events`).map((row) => row.id as string);
    const [{ pid }] = (await db`select pg_backend_pid() as pid`) as unknown as [{ pid: number }];
    const cpuBefore = backendCpuSeconds(pid);
    const started = performance.now();
    for (let i = 0; i < ids.length; i += ACK_BATCH) {
      await db`update events set acked_at = now()
               where id = any(${ids.slice(i, i + ACK_BATCH)}::uuid[]) and org_id = ${ORG} and acked_at is null`;
    }
    const seconds = (performance.now() - started) / 1000;
    const cpu = backendCpuSeconds(pid) - cpuBefore;
    console.log(
      `${sqlDir}: ${ids.length} acks in ${seconds.toFixed(2)} s = ${Math.round(ids.length / seconds)}/s; ` +
        `Postgres backend CPU ${((cpu * 1e6) / ids.length).toFixed(1)} µs per ack`,
    );
  } finally {
    await db.end({ timeout: 1 });
    await pg.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
