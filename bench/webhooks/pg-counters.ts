import type postgres from 'postgres';
import { sleep } from './clock.js';

export interface PgCounters {
  writes: number;
  eventInserts: number;
  lsn: bigint;
}

function parseLsn(lsn: string): bigint {
  const [hi, lo] = lsn.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}

async function pgCounters(sql: postgres.Sql): Promise<PgCounters> {
  const [row] = await sql`
    select
      (select coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) from pg_stat_user_tables
        where relname like 'webhook%' or relname like 'delivery%' or relname like 'endpoint_stats%')::float8 as writes,
      (select coalesce(sum(n_tup_ins), 0) from pg_stat_user_tables where relname like 'events%')::float8 as event_inserts,
      pg_current_wal_lsn()::text as lsn`;
  return { writes: Number(row!.writes), eventInserts: Number(row!.event_inserts), lsn: parseLsn(String(row!.lsn)) };
}

/**
 * The table counters once the scenario's writes have been published. A backend publishes its
 * counts when it ends a transaction if its last publication is over 1 s old, else it keeps them
 * until a later transaction or until it has been idle for 10 s. So after at least 1.2 s, from a
 * moment T, the counters are read once
 *   - every other backend on the database has either been idle for over 10.5 s, or has been seen
 *     to end statements at two moments after T at least 1 s apart (one of them published, after T), and
 *   - they have grown by at most SETTLED_WRITES over the last 2 s (some writes never stop: the
 *     delivery workers' heartbeats);
 * or after SETTLE_MAX_MS at most.
 */
const SETTLED_WRITES = 20;
const SETTLE_MAX_MS = 13_000;

export async function settledPgCounters(sql: postgres.Sql): Promise<PgCounters & { waitedMs: number }> {
  const started = Date.now();
  await sleep(1_200);
  const [{ t }] = (await sql`select extract(epoch from clock_timestamp())::float8 as t`) as unknown as [{ t: number }];
  // backend → the earliest and latest state change seen after t
  const seen = new Map<string, { first: number; last: number }>();
  const samples: Array<PgCounters & { at: number }> = [{ ...(await pgCounters(sql)), at: Date.now() }];
  for (;;) {
    const backends = await sql`
      select pid || ':' || extract(epoch from backend_start) as backend, state,
             extract(epoch from state_change)::float8 as changed, extract(epoch from clock_timestamp() - state_change)::float8 as age
      from pg_stat_activity
      where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend'`;
    let holding = 0;
    for (const b of backends) {
      const backend = String(b.backend);
      if (b.changed !== null && b.changed >= t) {
        const s = seen.get(backend);
        if (!s) seen.set(backend, { first: b.changed, last: b.changed });
        else s.last = Math.max(s.last, b.changed);
      }
      const s = seen.get(backend);
      const idleLong = b.state === 'idle' && b.age !== null && b.age > 10.5;
      if (!idleLong && !(s && s.last - s.first >= 1)) holding++;
    }
    const last = samples[samples.length - 1]!;
    const windowStart = samples.find((s) => last.at - s.at <= 2_000)!;
    const quiet =
      last.at - samples[0]!.at >= 2_000 &&
      last.writes - windowStart.writes <= SETTLED_WRITES &&
      last.eventInserts === windowStart.eventInserts;
    if ((quiet && holding === 0) || Date.now() - started >= SETTLE_MAX_MS)
      return { ...last, waitedMs: Date.now() - started };
    await sleep(250);
    samples.push({ ...(await pgCounters(sql)), at: Date.now() });
  }
}
