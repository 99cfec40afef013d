import type postgres from 'postgres';
import type { Pool } from 'undici';
import { cpuDiff, cpuSnapshot, type CpuSnapshot } from './cpu-split.js';
import { settledPgCounters, type PgCounters } from './pg-counters.js';
import type { ReceiverProcess } from './receiver-process.js';
import { recordRow } from './report.js';
import type { Row } from './results.js';
import type { ServerProcess } from './server-process.js';

/** What every scenario runs against; `pgBefore` moves on after each scenario. */
export interface ScenarioContext {
  server: ServerProcess;
  receiver: ReceiverProcess;
  sql: postgres.Sql;
  ingest: Pool;
  pgBefore: PgCounters;
}

/** Runs `body` between a CPU snapshot and the Postgres counters, and fills those into its row. */
export async function measured(ctx: ScenarioContext, body: (markEnd: () => void) => Promise<Row>): Promise<Row> {
  const before = cpuSnapshot(ctx.server, ctx.receiver);
  let after: CpuSnapshot | null = null;
  const row = await body(() => {
    after = cpuSnapshot(ctx.server, ctx.receiver);
  });
  const cpu = cpuDiff(after ?? cpuSnapshot(ctx.server, ctx.receiver), before);
  const pgAfter = await settledPgCounters(ctx.sql);
  row.cpu = cpu;
  row.pg = {
    writes: pgAfter.writes - ctx.pgBefore.writes,
    walBytes: Number(pgAfter.lsn - ctx.pgBefore.lsn),
    eventInserts: pgAfter.eventInserts - ctx.pgBefore.eventInserts,
    settleMs: pgAfter.waitedMs,
  };
  ctx.pgBefore = pgAfter;
  recordRow(row);
  return row;
}
