import type { Sql } from './connect.js';
import { MIGRATION_LOCK } from './migrate.js';

/**
 * One schema, two deployments (issue #13, docs/SCALING.md). On a database with the `citus`
 * extension (a Citus coordinator), the migrated tables are distributed here, at every start,
 * idempotently; on plain Postgres nothing happens. No flag: the extension is the switch.
 *
 * - Reference tables (a copy on every node, read locally by any shard): orgs and api_keys. Small,
 *   rarely written, and read by every request's authentication.
 * - Distributed by org_id, one colocation group (an org's rows of every table on one shard group,
 *   so its flush, its claims and its reads are single-node): events, event_dedup,
 *   webhook_endpoints and webhook_deliveries, in that order (a foreign key needs its target first),
 *   the consumer groups' consumer_groups and consumer_group_batches (sql/009_consumer_groups.sql),
 *   event_types (sql/010_event_types.sql) and endpoint_stats (sql/014_endpoint_stats.sql).
 * - Local on the coordinator (bookkeeping of this deployment's processes): delivery_leases,
 *   delivery_workers, schema_migrations.
 *
 * Tables already holding rows (a plain-Postgres install that became a coordinator) are copied to
 * their shards by Citus, and the coordinator's local copy is emptied afterwards.
 */
export const REFERENCE_TABLES = ['orgs', 'api_keys'] as const;
export const DISTRIBUTED_TABLES = [
  'events',
  'event_dedup',
  'webhook_endpoints',
  'webhook_deliveries',
  'consumer_groups',
  'consumer_group_batches',
  'event_types',
  'endpoint_stats',
] as const;
export const DISTRIBUTION_COLUMN = 'org_id';
// As sql/007_org_sequence.sql named it.
const DELIVERIES_ENDPOINT_KEY = 'webhook_deliveries_org_id_endpoint_id_fkey';

export async function isCitus(sql: Sql): Promise<boolean> {
  const [row] = await sql`select exists (select 1 from pg_extension where extname = 'citus') as citus`;
  return row!.citus as boolean;
}

/** Distributes what is not yet distributed; returns the tables it changed (empty on plain Postgres). */
export async function distributeOnCitus(sql: Sql): Promise<string[]> {
  if (!(await isCitus(sql))) return [];
  const changed: string[] = [];
  const reserved = await sql.reserve();
  try {
    // The migrations' lock: nodes starting together distribute once (advisory locks are
    // node-local, and every node talks to the coordinator).
    await reserved`select pg_advisory_lock(${MIGRATION_LOCK})`;
    // citus_tables also lists "local" tables that Citus manages itself (a local table with a
    // foreign key to a reference table becomes one): those still need distributing.
    const kinds = new Map(
      (await reserved`select table_name::text as name, citus_table_type as kind from citus_tables`).map((row) => [
        row.name as string,
        row.kind as string,
      ]),
    );
    const done = new Set([
      ...REFERENCE_TABLES.filter((table) => kinds.get(table) === 'reference'),
      ...DISTRIBUTED_TABLES.filter((table) => kinds.get(table) === 'distributed'),
    ]);
    for (const table of REFERENCE_TABLES) {
      if (done.has(table)) continue;
      await reserved`select create_reference_table(${table})`;
      changed.push(table);
    }
    // A local table may not reference a distributed one, so the deliveries' foreign key to their
    // endpoints is dropped while the two are distributed, then restored between the shards.
    const restoreDeliveriesKey = !done.has('webhook_deliveries');
    if (restoreDeliveriesKey)
      await reserved`alter table webhook_deliveries drop constraint if exists ${reserved(DELIVERIES_ENDPOINT_KEY)}`;
    for (const table of DISTRIBUTED_TABLES) {
      if (done.has(table)) continue;
      // The first starts its own colocation group; the rest join it.
      const colocateWith = table === DISTRIBUTED_TABLES[0] ? 'none' : DISTRIBUTED_TABLES[0];
      await reserved`select create_distributed_table(${table}, ${DISTRIBUTION_COLUMN}, colocate_with => ${colocateWith})`;
      changed.push(table);
    }
    if (restoreDeliveriesKey) {
      await reserved`alter table webhook_deliveries add constraint ${reserved(DELIVERIES_ENDPOINT_KEY)}
                     foreign key (org_id, endpoint_id) references webhook_endpoints (org_id, id) on delete cascade`;
    }
    // Rows that were local before are now on the shards too; the coordinator's copies go, in an
    // order the foreign keys between them allow.
    for (const table of [...changed].reverse()) {
      await reserved`select truncate_local_data_after_distributing_table(${table})`;
    }
  } finally {
    await reserved`select pg_advisory_unlock(${MIGRATION_LOCK})`.catch(() => {});
    reserved.release();
  }
  return changed;
}
