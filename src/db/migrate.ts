import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Sql } from './connect.js';

/** sql/ at the package root (this file runs from dist/src/db/). */
export const SQL_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../sql');

// Any fixed number shared by every node: the advisory lock that makes migrations run once.
export const MIGRATION_LOCK = 7_310_422_001;

/**
 * Applies sql/NNN_*.sql in order, each in its own transaction, recording each in
 * schema_migrations. An advisory lock serialises nodes that start together: the second waits,
 * then finds nothing left to do.
 */
export async function migrate(sql: Sql): Promise<string[]> {
  const files = fs
    .readdirSync(SQL_DIR)
    .filter((name) => /^\d{3}_.*\.sql$/.test(name))
    .sort();
  const applied: string[] = [];
  await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK})`;
    await tx`create table if not exists schema_migrations (version text primary key, applied_at timestamptz not null default now())`;
    const done = new Set((await tx`select version from schema_migrations`).map((row) => row.version as string));
    for (const file of files) {
      if (done.has(file)) continue;
      await tx.unsafe(fs.readFileSync(path.join(SQL_DIR, file), 'utf8'));
      await tx`insert into schema_migrations (version) values (${file})`;
      applied.push(file);
    }
  });
  return applied;
}

const DAY_MS = 86_400_000;

/** Daily event partitions from yesterday to `daysAhead` days ahead (UTC). */
export async function ensurePartitions(sql: Sql, daysAhead = 7, now = Date.now()): Promise<number> {
  const from = new Date(now - DAY_MS).toISOString().slice(0, 10);
  const to = new Date(now + daysAhead * DAY_MS).toISOString().slice(0, 10);
  const [row] = await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK})`;
    return tx`select ensure_event_partitions(${from}::date, ${to}::date) as created`;
  });
  return Number(row!.created);
}
