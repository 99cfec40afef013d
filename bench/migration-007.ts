/**
 * How long the upgrade to the per-org order (sql/007_org_sequence.sql) takes on a database the
 * previous release left, and what it locks: EVENTS events (default 1 000 000) over ORGS orgs
 * (default 100) in today's and yesterday's partitions, a third of them acknowledged, inserted in
 * transactions of 1 000 rows like the old server's flushes, and one webhook endpoint per org; then
 * the server's own migrate() applies 007, timed, while another connection records the locks it
 * holds (sampled every 100 ms).
 *
 *   npm run bench:migration            EVENTS=5000000 ORGS=1000 npm run bench:migration
 */
import fs from 'node:fs';
import path from 'node:path';
import { migrate, SQL_DIR } from '../src/db/migrate.js';
import { TestPostgres } from '../test/helpers/postgres.js';

const EVENTS = Number(process.env.EVENTS || 1_000_000);
const ORGS = Number(process.env.ORGS || 100);
const PREVIOUS = '006_endpoint_streams.sql';

async function main(): Promise<void> {
  const pg = await TestPostgres.start();
  try {
    const url = await pg.createDatabase('migration');
    void url;
    const sql = pg.connect('migration');
    const watcher = pg.connect('migration');
    try {
      const files = fs
        .readdirSync(SQL_DIR)
        .filter((name) => /^\d{3}_.*\.sql$/.test(name) && name <= PREVIOUS)
        .sort();
      await sql.begin(async (tx) => {
        await tx`create table schema_migrations (version text primary key, applied_at timestamptz not null default now())`;
        for (const file of files) {
          await tx.unsafe(fs.readFileSync(path.join(SQL_DIR, file), 'utf8'));
          await tx`insert into schema_migrations (version) values (${file})`;
        }
        await tx`select ensure_event_partitions(current_date - 1, current_date + 1)`;
        await tx`insert into orgs (id, name, rate_limit_per_sec, burst)
                 select ('00000000-0000-4000-8000-' || lpad(to_hex(o), 12, '0'))::uuid, 'org ' || o, 1000, 1000 from generate_series(0, ${ORGS - 1}::int) o`;
      });
      const loadStarted = performance.now();
      for (let lo = 0; lo < EVENTS; lo += 1000) {
        await sql`
          insert into events (org_id, id, type, payload, received_at, acked_at)
          select ('00000000-0000-4000-8000-' || lpad(to_hex(i % ${ORGS}), 12, '0'))::uuid, gen_random_uuid(), 'bench.event',
                 '{"user_id": 1, "plan": "pro"}', now() - make_interval(secs => (i % 80000)),
                 case when i % 3 = 0 then now() end
          from generate_series(${lo}::int, ${Math.min(EVENTS, lo + 1000) - 1}::int) i`;
      }
      await sql`insert into webhook_endpoints (id, org_id, url, secret, deliver_from, cursor_xid)
                select gen_random_uuid(), id, 'https://example.com/hook', 'whsec_x', now() - interval '1 day', pg_snapshot_xmin(pg_current_snapshot())
                from orgs`;
      await sql`vacuum analyze`;
      const [size] =
        await sql`select pg_size_pretty(sum(pg_total_relation_size(inhrelid))) as size from pg_inherits where inhparent = 'events'::regclass`;
      console.log(
        `loaded ${EVENTS} events of ${ORGS} orgs (${size!.size} with indexes) in ${((performance.now() - loadStarted) / 1000).toFixed(1)} s`,
      );

      const locks = new Map<string, string>();
      let watching = true;
      const watching$ = (async () => {
        while (watching) {
          const rows = await watcher`
            select c.relname::text as relation, l.mode from pg_locks l join pg_class c on c.oid = l.relation
            where l.pid <> pg_backend_pid() and l.granted and c.relname in ('events', 'webhook_endpoints', 'webhook_deliveries', 'event_dedup')`;
          for (const row of rows) locks.set(`${row.relation}: ${row.mode}`, '');
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      })();
      const started = performance.now();
      const applied = await migrate(sql);
      const seconds = (performance.now() - started) / 1000;
      watching = false;
      await watching$;
      console.log(
        `applied ${applied.join(', ')} in ${seconds.toFixed(1)} s (${(EVENTS / seconds / 1000).toFixed(0)}k events/s)`,
      );
      console.log(`locks seen on the main tables while it ran: ${[...locks.keys()].sort().join('; ')}`);
    } finally {
      await watcher.end({ timeout: 1 });
      await sql.end({ timeout: 1 });
    }
  } finally {
    await pg.stop();
  }
}

main().catch((error) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
