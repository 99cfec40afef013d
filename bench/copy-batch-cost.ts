/**
 * What a flush costs Postgres per row as a function of its size and COPY format: one COPY
 * connection writes COPY_BENCH_ROWS (20 000) events per measurement in COPYs of 1, 16, 64 and
 * 1 000 rows (each an autocommit transaction, as the firehose flush is), in text and in binary
 * format, alternating the order between rounds, into the events table as migrated. Backend CPU of that connection from /proc; "all
 * Postgres" adds the WAL writer and the rest of the cluster. The per-flush part (commit, WAL
 * flush, statement start) is what single-event ingest pays and raw COPY at 1 000 rows does not.
 *
 *   npm run build && node dist/bench/copy-batch-cost.js
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openDatabase } from '../src/db/connect.js';
import { CopyPool } from '../src/db/copy-pool.js';
import { startEmbeddedPostgres } from '../src/db/embedded.js';
import { ensurePartitions, migrate } from '../src/db/migrate.js';
import { wireTarget } from '../src/db/wire.js';
import { isoMs, uuidv7 } from '../src/ids.js';
import { COPY_EVENTS, COPY_EVENTS_BINARY, encodeCopyRows } from '../src/ingest/batcher.js';
import { encodeBinaryRows } from '../src/ingest/copy-encode.js';
import { validateEvent } from '../src/ingest/validate.js';
import { cpuSeconds, descendantsOf, postmasterPid } from './proc-stats.js';

const ROWS = Number(process.env.COPY_BENCH_ROWS || 20_000);
const ROUNDS = Number(process.env.COPY_BENCH_ROUNDS || 3);
const SIZES = [1, 16, 64, 1000];
const FORMATS = ['text', 'binary'] as const;
const CASES = SIZES.flatMap((size) => FORMATS.map((format) => ({ size, format, name: `${size} rows, ${format}` })));
const ORG = '0193aaaa-0000-7000-8000-000000000001';
const PAYLOAD = {
  user_id: 12345,
  email: 'someone@example.com',
  plan: 'pro',
  tags: ['a', 'b', 'c'],
  amount: 49.5,
  note: 'x'.repeat(120),
};

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'triggers-copy-batch-'));
  fs.chmodSync(dir, 0o755);
  const pg = await startEmbeddedPostgres(dir, () => {});
  const db = openDatabase(pg.databaseUrl, { max: 1, name: 'copy-batch-admin' });
  const pool = new CopyPool(wireTarget(pg.databaseUrl, { application_name: 'copy-batch' }), 1);
  const postmaster = postmasterPid(path.join(dir, 'pg'))!;
  const clusterCpu = () => [postmaster, ...descendantsOf(postmaster)].reduce((sum, p) => sum + cpuSeconds(p), 0);
  const results = new Map<string, Array<{ backend: number; all: number; node: number }>>();
  try {
    await migrate(db);
    await ensurePartitions(db);
    const event = validateEvent({ type: 'bench.flush', payload: PAYLOAD }, '');
    await pool.copy(COPY_EVENTS, '');
    const [{ pid }] = (await db`select pid from pg_stat_activity where application_name = 'copy-batch'`) as unknown as [
      { pid: number },
    ];
    for (let round = 0; round < ROUNDS; round++) {
      for (const { size, format, name } of round % 2 === 0 ? CASES : [...CASES].reverse()) {
        await db`truncate events`;
        await db`checkpoint`;
        const backendBefore = cpuSeconds(pid);
        const allBefore = clusterCpu();
        let encodeMs = 0;
        for (let done = 0; done < ROWS; done += size) {
          const now = Date.now();
          const rows = Array.from({ length: size }, () => ({
            orgId: ORG,
            id: uuidv7(now),
            receivedAt: isoMs(now),
            event,
          }));
          const started = performance.now();
          const data = format === 'binary' ? encodeBinaryRows(rows) : encodeCopyRows(rows);
          encodeMs += performance.now() - started;
          await pool.copy(format === 'binary' ? COPY_EVENTS_BINARY : COPY_EVENTS, data);
        }
        const sample = {
          backend: ((cpuSeconds(pid) - backendBefore) * 1e6) / ROWS,
          all: ((clusterCpu() - allBefore) * 1e6) / ROWS,
          node: (encodeMs * 1000) / ROWS,
        };
        results.set(name, [...(results.get(name) ?? []), sample]);
        process.stderr.write(
          `round ${round + 1}, ${name}: backend ${sample.backend.toFixed(1)} µs/row, all Postgres ${sample.all.toFixed(1)} µs/row, encoding ${sample.node.toFixed(2)} µs/row\n`,
        );
      }
    }
  } finally {
    pool.close();
    await db.end({ timeout: 1 });
    await pg.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  const lines = [
    '| rows per COPY, format | backend µs/row (median) | all Postgres µs/row (median) | backend, each round | Node encoding µs/row (median, wall) |',
    '|---|---|---|---|---|',
  ];
  for (const { name } of CASES) {
    const samples = results.get(name)!;
    lines.push(
      `| ${name} | ${median(samples.map((s) => s.backend)).toFixed(1)} | ${median(samples.map((s) => s.all)).toFixed(1)} | ${samples.map((s) => s.backend.toFixed(1)).join(', ')} | ${median(samples.map((s) => s.node)).toFixed(2)} |`,
    );
  }
  process.stdout.write(`${ROWS} rows per measurement, ${ROUNDS} rounds\n\n${lines.join('\n')}\n`);
}

main().catch((error) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
