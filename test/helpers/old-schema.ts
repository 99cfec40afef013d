import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { Sql } from '../../src/db/connect.js';
import { SQL_DIR } from '../../src/db/migrate.js';
import { call } from './api.js';

/**
 * Databases as an older version left them, for the upgrade tests: the migration files applied
 * directly (as that version's server did), then the real server of this checkout started on it.
 */

/** The migrations up to and including `last` (e.g. '006_endpoint_streams.sql'), in order. */
export function migrationsThrough(last: string): string[] {
  const files = fs
    .readdirSync(SQL_DIR)
    .filter((name) => /^\d{3}_.*\.sql$/.test(name) && name <= last)
    .sort();
  assert.equal(files.at(-1), last, `no migration ${last} in ${SQL_DIR}`);
  return files;
}

/**
 * Migrations `files` applied and recorded, daily partitions from two days ago (UTC) to a week
 * ahead, and one org per id in `orgIds` (no API keys: `createKeyFor` adds them once a server runs).
 */
export async function oldSchema(db: Sql, files: string[], orgIds: string[]): Promise<void> {
  await db.begin(async (tx) => {
    await tx`create table schema_migrations (version text primary key, applied_at timestamptz not null default now())`;
    for (const file of files) {
      await tx.unsafe(fs.readFileSync(path.join(SQL_DIR, file), 'utf8'));
      await tx`insert into schema_migrations (version) values (${file})`;
    }
    await tx`select ensure_event_partitions((now() at time zone 'UTC')::date - 2, (now() at time zone 'UTC')::date + 7)`;
    for (const [i, orgId] of orgIds.entries()) {
      await tx`insert into orgs (id, name, rate_limit_per_sec, burst) values (${orgId}, ${`upgraded ${i + 1}`}, 1000, 1000)`;
    }
  });
}

/** `count` events of `orgId` in one transaction; received_at in whole milliseconds, as the server stamps it. */
export function insertOldEvents(db: Sql, orgId: string, count: number): Promise<Array<Record<string, string>>> {
  return db.begin(
    (tx) => tx`
    insert into events (org_id, id, type, payload, received_at)
    select ${orgId}, gen_random_uuid(), 'old.event', '{}', date_trunc('milliseconds', clock_timestamp()) from generate_series(1, ${count})
    returning id::text, xid::text as cursor_xid`,
  ) as unknown as Promise<Array<Record<string, string>>>;
}

/** A new API key (all scopes) for an org that exists only in the database, through the admin API. */
export async function createKeyFor(at: string, orgId: string): Promise<{ key: string }> {
  const response = await call(at, 'POST', `/v1/admin/orgs/${orgId}/keys`, { admin: true, body: {} });
  assert.equal(response.status, 201, response.text);
  return { key: response.body.key };
}
