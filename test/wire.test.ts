import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import postgres from 'postgres';
import type { Sql } from '../src/db/connect.js';
import { CopyPool } from '../src/db/copy-pool.js';
import { PostgresWireError, WireConnection, wireTarget } from '../src/db/wire.js';
import { TestPostgres } from './helpers/postgres.js';
import { hasPostgres15, SystemPostgres } from './helpers/system-postgres.js';

// The ingest hot path's own COPY connections (src/db/wire.ts, src/db/copy-pool.ts), against real
// servers: the embedded Postgres on a Unix socket, and PostgreSQL 15 over TCP with each password
// method a production DATABASE_URL may meet.

const COPY = 'copy t (id, note) from stdin';
const rows = (from: number, n: number) => Array.from({ length: n }, (_, i) => `${from + i}\tnote ${from + i}\n`).join('');

describe('COPY pool on the embedded Postgres (Unix socket)', () => {
  let pg: TestPostgres;
  let url: string;
  let sql: Sql;

  before(async () => {
    pg = await TestPostgres.start();
    url = await pg.createDatabase('wire');
    sql = pg.connect('wire');
    await sql`create table t (id integer primary key, note text not null)`;
  });

  after(async () => {
    await sql?.end({ timeout: 1 });
    await pg?.stop();
  });

  test('rows are committed when copy() resolves, and it returns the row count', async () => {
    const pool = new CopyPool(wireTarget(url, { application_name: 'wire-test' }), 2);
    try {
      assert.equal(await pool.copy(COPY, rows(1, 100)), 100);
      assert.deepEqual(await Promise.all([pool.copy(COPY, rows(101, 50)), pool.copy(COPY, rows(151, 50))]), [50, 50]);
      const [row] = await sql`select count(*)::int as n, max(id) as top from t`;
      assert.equal(row!.n, 200);
      assert.equal(row!.top, 200);
      // Startup parameters reach the session.
      const [session] = await sql`select count(*)::int as n from pg_stat_activity where application_name = 'wire-test'`;
      assert.ok(session!.n >= 1);
    } finally {
      pool.close();
    }
  });

  test('a failing COPY rejects with the server error, stores nothing, and the connection stays usable', async () => {
    const pool = new CopyPool(wireTarget(url, {}), 1);
    try {
      const before = (await sql`select count(*)::int as n from t`)[0]!.n;
      // Fails before copy-in: the server must ignore the CopyData/CopyDone sent with the query.
      await assert.rejects(pool.copy('copy missing_table (id) from stdin', '1\n'), (error: PostgresWireError) => error.code === '42P01');
      // Fails mid-copy on the second row: the whole COPY rolls back.
      await assert.rejects(pool.copy(COPY, rows(1000, 1) + 'not-a-number\tx\n'), (error: PostgresWireError) => error.code === '22P02');
      // Duplicate key at commit-time checks.
      await assert.rejects(pool.copy(COPY, rows(1, 1)), (error: PostgresWireError) => error.code === '23505');
      assert.equal((await sql`select count(*)::int as n from t`)[0]!.n, before);
      // The same (only) connection goes on working, in protocol sync.
      assert.equal(await pool.copy(COPY, rows(2000, 3)), 3);
      assert.equal((await sql`select count(*)::int as n from t where id >= 2000`)[0]!.n, 3);
    } finally {
      pool.close();
    }
  });

  test('a terminated backend fails the next COPY promptly; the pool reconnects after it', async () => {
    const pool = new CopyPool(wireTarget(url, { application_name: 'wire-terminate' }), 1);
    try {
      assert.equal(await pool.copy(COPY, rows(3000, 1)), 1);
      await sql`select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'wire-terminate'`;
      let stored = 0;
      for (let attempt = 0; attempt < 50 && stored === 0; attempt++) {
        try {
          stored = await pool.copy(COPY, rows(3001, 1));
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
      assert.equal(stored, 1);
      assert.equal((await sql`select count(*)::int as n from t where id in (3000, 3001)`)[0]!.n, 2);
    } finally {
      pool.close();
    }
  });

  test('a backend that stops answering mid-COPY is dropped after deadAfterMs; the pool carries on', async () => {
    const pool = new CopyPool(wireTarget(url, { application_name: 'wire-silent' }), 1, 500);
    let stopped: number | null = null;
    try {
      assert.equal(await pool.copy(COPY, rows(4000, 1)), 1);
      const [backend] = await sql`select pid from pg_stat_activity where application_name = 'wire-silent'`;
      stopped = backend!.pid as number;
      process.kill(stopped, 'SIGSTOP'); // alive, connected, silent: what a dead network looks like
      await assert.rejects(pool.copy(COPY, rows(4001, 1)), /no answer from Postgres within 500 ms/);
      process.kill(stopped, 'SIGCONT');
      stopped = null;
      assert.equal(await pool.copy(COPY, rows(4002, 1)), 1); // on a new connection
    } finally {
      if (stopped !== null) process.kill(stopped, 'SIGCONT');
      pool.close();
    }
  });

  test('an unreachable server rejects at once instead of hanging', async () => {
    const target = wireTarget(url, {});
    const pool = new CopyPool({ ...target, path: path.join(pg.dir, 'no-such-socket') }, 1);
    await assert.rejects(pool.copy(COPY, rows(1, 1)), /ENOENT/);
    pool.close();
  });
});

const missing = !hasPostgres15();
if (missing && process.env.CI === 'true') throw new Error('PostgreSQL 15 binaries are required in CI (apt-get install postgresql-15)');
const skip = missing ? 'PostgreSQL 15 server binaries not installed (apt-get install postgresql-15)' : false;

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
if (!hasOpenssl() && process.env.CI === 'true') throw new Error('openssl is required in CI (apt-get install openssl)');
const skipTls = skip || (hasOpenssl() ? false : 'openssl not installed (apt-get install openssl): no certificate for the TLS test');

describe('wire connection to PostgreSQL 15 over TCP: password methods and sslmode', { skip }, () => {
  let pg: SystemPostgres;
  let admin: postgres.Sql;
  const password = 'pässword-' + Math.random().toString(36).slice(2);
  const urlFor = (user: string, secret = password, query = '') =>
    `postgres://${user}:${encodeURIComponent(secret)}@127.0.0.1:${pg.port}/postgres${query}`;

  before(async () => {
    pg = await SystemPostgres.start();
    admin = postgres(pg.url, { max: 1, onnotice: () => {} });
    await admin`create table t (id integer primary key, note text not null)`;
    await admin`grant all on t to public`;
    await admin.unsafe(`set password_encryption = 'scram-sha-256'; create role scram_user login password '${password}'`);
    await admin.unsafe(`set password_encryption = 'md5'; create role md5_user login password '${password}'`);
    await admin.unsafe(`create role clear_user login password '${password}'`);
    const hba = path.join(pg.dir, 'data', 'pg_hba.conf');
    fs.writeFileSync(hba, [
      'host all scram_user 127.0.0.1/32 scram-sha-256',
      'host all md5_user 127.0.0.1/32 md5',
      'host all clear_user 127.0.0.1/32 password',
      fs.readFileSync(hba, 'utf8'),
    ].join('\n'));
    await admin`select pg_reload_conf()`;
  });

  after(async () => {
    await admin?.end({ timeout: 1 });
    await pg?.stop();
  });

  for (const [user, from] of [['scram_user', 1], ['md5_user', 100], ['clear_user', 200]] as const) {
    test(`authenticates with ${user.replace('_user', '')} and copies`, async () => {
      const pool = new CopyPool(wireTarget(urlFor(user), {}), 1);
      try {
        assert.equal(await pool.copy(COPY, rows(from, 5)), 5);
      } finally {
        pool.close();
      }
      assert.equal((await admin`select count(*)::int as n from t where id between ${from} and ${from + 4}`)[0]!.n, 5);
    });
  }

  test('a wrong password is refused with the server\'s error', async () => {
    await assert.rejects(WireConnection.connect(wireTarget(urlFor('scram_user', 'wrong'), {})), (error: PostgresWireError) => error.code === '28P01');
  });

  test('sslmode=prefer falls back to plain on a server without TLS; sslmode=require refuses it', async () => {
    const preferred = await WireConnection.connect(wireTarget(urlFor('scram_user', password, '?sslmode=prefer'), {}));
    preferred.close();
    await assert.rejects(WireConnection.connect(wireTarget(urlFor('scram_user', password, '?sslmode=require'), {})), /does not offer TLS/);
  });

  test('TLS: sslmode=require copies over TLS; verify-full refuses a self-signed certificate', { skip: skipTls }, async () => {
    // A self-signed certificate for the server (openssl; CI installs it), then TLS on, reloaded.
    const data = path.join(pg.dir, 'data');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
      '-keyout', path.join(data, 'server.key'), '-out', path.join(data, 'server.crt')], { stdio: 'ignore' });
    const postgresUser = process.getuid?.() === 0 ? Number(execFileSync('id', ['-u', 'postgres']).toString()) : null;
    for (const file of ['server.key', 'server.crt']) {
      fs.chmodSync(path.join(data, file), 0o600);
      if (postgresUser !== null) fs.chownSync(path.join(data, file), postgresUser, Number(execFileSync('id', ['-g', 'postgres']).toString()));
    }
    await admin.unsafe(`alter system set ssl = on`);
    await admin`select pg_reload_conf()`;
    await admin`select pg_sleep(0.5)`;

    const pool = new CopyPool(wireTarget(urlFor('scram_user', password, '?sslmode=require'), { application_name: 'wire-tls' }), 1);
    try {
      assert.equal(await pool.copy(COPY, rows(300, 4)), 4);
      const [session] = await admin`select ssl from pg_stat_ssl join pg_stat_activity using (pid) where application_name = 'wire-tls'`;
      assert.equal(session?.ssl, true, 'the COPY connection is not encrypted');
    } finally {
      pool.close();
    }
    assert.equal((await admin`select count(*)::int as n from t where id between 300 and 303`)[0]!.n, 4);
    await assert.rejects(WireConnection.connect(wireTarget(urlFor('scram_user', password, '?sslmode=verify-full'), {})), /self[- ]signed/i);
  });
});
