import assert from 'node:assert/strict';
import diagnostics_channel from 'node:diagnostics_channel';
import type { Sql } from '../../src/db/connect.js';
import { flushFinishedChannel, type FlushFinished } from '../../src/ingest/channels.js';
import { createOrgWithKey, sendEvent, type ApiResponse } from './api.js';
import { InProcessServer } from './in-process.js';
import { holdEventsLock, type TestPostgres } from './postgres.js';

/**
 * What the write-isolation tests (issue 23) share: an in-process server with an attacker org and a
 * victim org, a trigger that makes Postgres refuse marked rows, and ways to watch and group flushes.
 */

const servers: InProcessServer[] = [];
const pools: Sql[] = [];

export async function stopSetups(): Promise<void> {
  for (const pool of pools.splice(0)) await pool.end({ timeout: 1 });
  for (const server of servers.splice(0)) await server.stop();
}

export interface Setup {
  base: string;
  db: Sql;
  attacker: { key: string; orgId: string };
  victim: { key: string; orgId: string };
}

export async function startSetup(pg: TestPostgres, name: string, env: Record<string, string>): Promise<Setup> {
  const url = await pg.createDatabase(name);
  // FLUSH_CONCURRENCY=1: what is sent while a flush runs queues for the next one, so the orgs'
  // events share flushes.
  const server = await InProcessServer.start({ databaseUrl: url, env: { FLUSH_CONCURRENCY: '1', ...env } });
  servers.push(server);
  const db = pg.connect(name);
  pools.push(db);
  const attacker = await createOrgWithKey(server.url, { name: 'attacker' });
  const victim = await createOrgWithKey(server.url, { name: 'victim' });
  // A row Postgres refuses that no validation can foresee: a data-class error raised by a trigger
  // for the marked type (a BEFORE trigger on the partitioned table runs on every partition).
  await db.unsafe(`
    create function isolation_test_refuse() returns trigger language plpgsql as $$
    begin
      if new.type = 'refuse.me' then raise exception using errcode = '22023', message = 'isolation_test: refused marked row'; end if;
      if new.type = 'sleep.me' then perform pg_sleep(30); end if;
      return new;
    end $$;
    create trigger isolation_test_refuse before insert on events for each row execute function isolation_test_refuse();`);
  return { base: server.url, db, attacker, victim };
}

export async function storedIds(db: Sql, ids: string[]): Promise<Set<string>> {
  const rows = await db`select id from events where id = any(${ids}::uuid[])`;
  return new Set(rows.map((row) => row.id as string));
}

export async function countOf(db: Sql, orgId: string, types: string[]): Promise<number> {
  const [row] =
    await db`select count(*)::int as n from events where org_id = ${orgId} and type = any(${types}::text[])`;
  return row!.n as number;
}

/** Flushes as the batcher reports them, while `during` runs. */
export async function watchFlushes<T>(during: () => Promise<T>): Promise<{ result: T; flushes: FlushFinished[] }> {
  const flushes: FlushFinished[] = [];
  const listener = (message: unknown) => flushes.push(message as FlushFinished);
  diagnostics_channel.subscribe(flushFinishedChannel.name, listener);
  try {
    return { result: await during(), flushes };
  } finally {
    diagnostics_channel.unsubscribe(flushFinishedChannel.name, listener);
  }
}

/**
 * Sends everything `send` starts into one flush: a first event waits on a lock on events, so
 * the rest queue behind it (FLUSH_CONCURRENCY=1) and go together once the lock is gone.
 */
export async function inOneFlush<T>(setup: Setup, send: () => Promise<T>): Promise<T> {
  const lock = await holdEventsLock(setup.db);
  let sent: Promise<T>;
  let held: Promise<ApiResponse>;
  try {
    held = sendEvent(setup.base, setup.victim.key, { type: 'held', payload: {} });
    for (let i = 0; i < 200; i++) {
      if (
        (
          await setup.db`select 1 from pg_stat_activity where application_name like 'triggers-%' and wait_event_type = 'Lock'`
        ).length > 0
      )
        break;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    sent = send();
    await new Promise((resolve) => setTimeout(resolve, 300));
  } finally {
    lock.release();
    await lock.done;
  }
  assert.equal((await held).status, 202);
  return sent;
}

export const OUT_OF_RANGE = ['0000-01-01T00:00:00Z', '0001-01-01T00:30:00+01:00', '9999-12-31T23:30:00-01:00'];
