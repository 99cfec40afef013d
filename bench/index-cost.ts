/**
 * What each index on `events` costs a COPY: Postgres CPU per row with the schema as migrated, and
 * with each index (or all of them) removed, in alternating rounds on one throwaway cluster. Each
 * measurement starts from an empty table after a CHECKPOINT, and COPYs INDEX_BENCH_ROWS (100 000)
 * events of 25 orgs in 1 000-row batches through the server's own COPY path and encoding.
 * Backend CPU from /proc (the COPY connection's process); "all Postgres" adds the WAL writer,
 * checkpointer and the rest of the cluster's processes.
 *
 *   npm run build && node dist/bench/index-cost.js
 *   INDEX_BENCH_ROUNDS=5 INDEX_BENCH_ROWS=200000 node dist/bench/index-cost.js
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
import { COPY_EVENTS, encodeCopyRows } from '../src/ingest/batcher.js';
import { validateEvent } from '../src/ingest/validate.js';
import { cpuSeconds, descendantsOf, postmasterPid } from './proc-stats.js';

const ROWS = Number(process.env.INDEX_BENCH_ROWS || 100_000);
const ROUNDS = Number(process.env.INDEX_BENCH_ROUNDS || 3);
const BATCH = 1_000;
const ORGS = Array.from({ length: 25 }, (_, i) => `0193aaaa-0000-7000-8000-${String(i).padStart(12, '0')}`);
const TYPES = ['user.signup', 'user.login', 'order.paid', 'order.refunded', 'email.bounced'];
const PAYLOAD = {
  user_id: 12345,
  email: 'someone@example.com',
  plan: 'pro',
  tags: ['a', 'b', 'c'],
  amount: 49.5,
  note: 'x'.repeat(120),
};

/** Each index that ingestion writes to, as the migrations create it. */
const INDEXES: Record<string, { drop: string; create: string }> = {
  events_pkey: {
    drop: 'alter table events drop constraint events_pkey',
    create: 'alter table events add primary key (id, received_at)',
  },
  events_unacked: {
    drop: 'drop index events_unacked',
    create: 'create index events_unacked on events (org_id, xid, id) where acked_at is null',
  },
  events_unacked_by_type: {
    drop: 'drop index events_unacked_by_type',
    create: 'create index events_unacked_by_type on events (org_id, type collate "C", xid, id) where acked_at is null',
  },
};
const CONFIGS: Array<{ name: string; without: string[] }> = [
  { name: 'as migrated', without: [] },
  ...Object.keys(INDEXES).map((name) => ({ name: `without ${name}`, without: [name] })),
  { name: 'no index', without: Object.keys(INDEXES) },
];

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'triggers-index-cost-'));
  fs.chmodSync(dir, 0o755);
  const pg = await startEmbeddedPostgres(dir, () => {});
  const db = openDatabase(pg.databaseUrl, { max: 1, name: 'index-cost-admin' });
  const pool = new CopyPool(wireTarget(pg.databaseUrl, { application_name: 'index-cost' }), 1);
  const postmaster = postmasterPid(path.join(dir, 'pg'))!;
  const results = new Map<string, Array<{ backend: number; all: number }>>();
  try {
    await migrate(db);
    await ensurePartitions(db);
    const event = validateEvent({ type: 'bench.index', payload: PAYLOAD }, '');
    await pool.copy(COPY_EVENTS, ''); // opens the connection
    const [{ pid }] = (await db`select pid from pg_stat_activity where application_name = 'index-cost'`) as unknown as [
      { pid: number },
    ];
    const present = new Set(Object.keys(INDEXES));
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate the order between rounds so drift on a shared machine does not favour one.
      const order = round % 2 === 0 ? CONFIGS : [...CONFIGS].reverse();
      for (const config of order) {
        await db`truncate events`;
        for (const name of Object.keys(INDEXES)) {
          const wanted = !config.without.includes(name);
          if (wanted && !present.has(name)) await db.unsafe(INDEXES[name]!.create);
          if (!wanted && present.has(name)) await db.unsafe(INDEXES[name]!.drop);
          if (wanted) present.add(name);
          else present.delete(name);
        }
        await db`checkpoint`;
        const clusterCpu = () => [postmaster, ...descendantsOf(postmaster)].reduce((sum, p) => sum + cpuSeconds(p), 0);
        const backendBefore = cpuSeconds(pid);
        const allBefore = clusterCpu();
        for (let done = 0; done < ROWS; done += BATCH) {
          const now = Date.now();
          const rows = Array.from({ length: BATCH }, (_, i) => ({
            orgId: ORGS[(done + i) % ORGS.length]!,
            id: uuidv7(now),
            receivedAt: isoMs(now),
            event: { ...event, type: TYPES[(done + i) % TYPES.length]! },
          }));
          await pool.copy(COPY_EVENTS, encodeCopyRows(rows));
        }
        const sample = {
          backend: ((cpuSeconds(pid) - backendBefore) * 1e6) / ROWS,
          all: ((clusterCpu() - allBefore) * 1e6) / ROWS,
        };
        results.set(config.name, [...(results.get(config.name) ?? []), sample]);
        process.stderr.write(
          `round ${round + 1} ${config.name}: backend ${sample.backend.toFixed(1)} µs/row, all Postgres ${sample.all.toFixed(1)} µs/row\n`,
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
  const base = median(results.get('as migrated')!.map((s) => s.backend));
  const lines = [
    '| schema | backend µs/row (median) | all Postgres µs/row (median) | backend rounds | change against as migrated |',
    '|---|---|---|---|---|',
  ];
  for (const [name, samples] of results) {
    const backend = median(samples.map((s) => s.backend));
    lines.push(
      `| ${name} | ${backend.toFixed(1)} | ${median(samples.map((s) => s.all)).toFixed(1)} | ${samples.map((s) => s.backend.toFixed(1)).join(', ')} | ${(backend - base).toFixed(1)} |`,
    );
  }
  process.stdout.write(`${ROWS} rows per measurement, ${ROUNDS} rounds, ${BATCH}-row COPYs\n\n${lines.join('\n')}\n`);
}

main().catch((error) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
