import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import postgres from 'postgres';
import { openDatabase, type Sql } from '../src/db/connect.js';
import { CopyPool } from '../src/db/copy-pool.js';
import { PostgresWireError, WireConnection, wireTarget } from '../src/db/wire.js';
import { TestPostgres } from './helpers/postgres.js';
import { hasOpenssl, hasPostgres15, SystemPostgres } from './helpers/system-postgres.js';

// The ingest hot path's own COPY connections (src/db/wire.ts, src/db/copy-pool.ts), against real
// servers: the embedded Postgres on a Unix socket, and PostgreSQL 15 over TCP with each password
// method a production DATABASE_URL may meet.

const COPY = 'copy t (id, note) from stdin';
const rows = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => `${from + i}\tnote ${from + i}\n`).join('');

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
      await assert.rejects(
        pool.copy('copy missing_table (id) from stdin', '1\n'),
        (error: PostgresWireError) => error.code === '42P01',
      );
      // Fails mid-copy on the second row: the whole COPY rolls back.
      await assert.rejects(
        pool.copy(COPY, rows(1000, 1) + 'not-a-number\tx\n'),
        (error: PostgresWireError) => error.code === '22P02',
      );
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
if (missing && process.env.CI === 'true')
  throw new Error('PostgreSQL 15 binaries are required in CI (apt-get install postgresql-15)');
const skip = missing ? 'PostgreSQL 15 server binaries not installed (apt-get install postgresql-15)' : false;

if (!hasOpenssl() && process.env.CI === 'true') throw new Error('openssl is required in CI (apt-get install openssl)');
const skipTls =
  skip || (hasOpenssl() ? false : 'openssl not installed (apt-get install openssl): no certificate for the TLS test');

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
    await admin.unsafe(
      `set password_encryption = 'scram-sha-256'; create role scram_user login password '${password}'`,
    );
    await admin.unsafe(`set password_encryption = 'md5'; create role md5_user login password '${password}'`);
    await admin.unsafe(`create role clear_user login password '${password}'`);
    const hba = path.join(pg.dir, 'data', 'pg_hba.conf');
    fs.writeFileSync(
      hba,
      [
        'host all scram_user 127.0.0.1/32 scram-sha-256',
        'host all md5_user 127.0.0.1/32 md5',
        'host all clear_user 127.0.0.1/32 password',
        fs.readFileSync(hba, 'utf8'),
      ].join('\n'),
    );
    await admin`select pg_reload_conf()`;
  });

  after(async () => {
    await admin?.end({ timeout: 1 });
    await pg?.stop();
  });

  for (const [user, from] of [
    ['scram_user', 1],
    ['md5_user', 100],
    ['clear_user', 200],
  ] as const) {
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

  test("a wrong password is refused with the server's error", async () => {
    await assert.rejects(
      WireConnection.connect(wireTarget(urlFor('scram_user', 'wrong'), {})),
      (error: PostgresWireError) => error.code === '28P01',
    );
  });

  test('sslmode=prefer falls back to plain on a server without TLS; sslmode=require refuses it', async () => {
    const preferred = await WireConnection.connect(wireTarget(urlFor('scram_user', password, '?sslmode=prefer'), {}));
    preferred.close();
    await assert.rejects(
      WireConnection.connect(wireTarget(urlFor('scram_user', password, '?sslmode=require'), {})),
      /does not offer TLS/,
    );
  });

  test('TLS: sslmode=require copies over TLS; verify-full refuses a self-signed certificate', {
    skip: skipTls,
  }, async () => {
    // A self-signed certificate for the server (openssl; CI installs it), then TLS on, reloaded.
    const data = path.join(pg.dir, 'data');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-keyout',
        path.join(data, 'server.key'),
        '-out',
        path.join(data, 'server.crt'),
      ],
      { stdio: 'ignore' },
    );
    const postgresUser = process.getuid?.() === 0 ? Number(execFileSync('id', ['-u', 'postgres']).toString()) : null;
    for (const file of ['server.key', 'server.crt']) {
      fs.chmodSync(path.join(data, file), 0o600);
      if (postgresUser !== null)
        fs.chownSync(path.join(data, file), postgresUser, Number(execFileSync('id', ['-g', 'postgres']).toString()));
    }
    await admin.unsafe(`alter system set ssl = on`);
    await admin`select pg_reload_conf()`;
    await admin`select pg_sleep(0.5)`;

    const pool = new CopyPool(
      wireTarget(urlFor('scram_user', password, '?sslmode=require'), { application_name: 'wire-tls' }),
      1,
    );
    try {
      assert.equal(await pool.copy(COPY, rows(300, 4)), 4);
      const [session] =
        await admin`select ssl from pg_stat_ssl join pg_stat_activity using (pid) where application_name = 'wire-tls'`;
      assert.equal(session?.ssl, true, 'the COPY connection is not encrypted');
    } finally {
      pool.close();
    }
    assert.equal((await admin`select count(*)::int as n from t where id between 300 and 303`)[0]!.n, 4);
    await assert.rejects(
      WireConnection.connect(wireTarget(urlFor('scram_user', password, '?sslmode=verify-full'), {})),
      /self[- ]signed/i,
    );
  });
});

// A server that does not know the password can still answer "AuthenticationOk". Both paths must
// refuse a SCRAM login unless the server's SASLFinal carries the signature only the password makes.
// A fake server speaking just enough of the protocol; no Postgres needed.
type ScramEnding = 'no-final' | 'wrong-final' | 'right-final';

class FakeScramServer {
  /** Message types each connection sent after the server's AuthenticationOk (a query is a leak). */
  readonly afterLogin: string[][] = [];
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    private readonly ending: ScramEnding,
    private readonly password: string,
  ) {
    this.server = net.createServer((socket) => this.serve(socket));
  }

  static async start(ending: ScramEnding, password: string): Promise<{ fake: FakeScramServer; port: number }> {
    const fake = new FakeScramServer(ending, password);
    await new Promise<void>((resolve) => fake.server.listen(0, '127.0.0.1', resolve));
    return { fake, port: (fake.server.address() as net.AddressInfo).port };
  }

  close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private serve(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => {});
    const auth = (code: number, text = '') => {
      const body = Buffer.from(text);
      const message = Buffer.alloc(9 + body.length);
      message[0] = 0x52;
      message.writeInt32BE(8 + body.length, 1);
      message.writeInt32BE(code, 5);
      body.copy(message, 9);
      return message;
    };
    const ready = Buffer.from([0x5a, 0, 0, 0, 5, 0x49]);
    let data = Buffer.alloc(0);
    let stage = 0;
    let clientFirstBare = '';
    let serverFirst = '';
    const salt = crypto.randomBytes(16);
    const seen: string[] = [];
    const batch: string[] = [];
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      for (;;) {
        if (stage === 0) {
          // StartupMessage (no type byte)
          if (data.length < 4 || data.length < data.readInt32BE(0)) return;
          data = data.subarray(data.readInt32BE(0));
          socket.write(auth(10, 'SCRAM-SHA-256\0\0'));
          stage = 1;
          continue;
        }
        if (data.length < 5 || data.length < 1 + data.readInt32BE(1)) return;
        const type = String.fromCharCode(data[0]!);
        const body = data.subarray(5, 1 + data.readInt32BE(1));
        data = data.subarray(1 + data.readInt32BE(1));
        if (stage === 1) {
          // SASLInitialResponse
          const mechanismEnd = body.indexOf(0);
          clientFirstBare = body.toString('utf8', mechanismEnd + 5).slice(3);
          const clientNonce = clientFirstBare.slice(clientFirstBare.indexOf('r=') + 2);
          serverFirst = `r=${clientNonce}${crypto.randomBytes(12).toString('base64')},s=${salt.toString('base64')},i=4096`;
          socket.write(auth(11, serverFirst));
          stage = 2;
        } else if (stage === 2) {
          // SASLResponse: client-final
          const clientFinal = body.toString('utf8');
          const withoutProof = clientFinal.slice(0, clientFinal.indexOf(',p='));
          const salted = crypto.pbkdf2Sync(this.password, salt, 4096, 32, 'sha256');
          const serverKey = crypto.createHmac('sha256', salted).update('Server Key').digest();
          const signature = crypto
            .createHmac('sha256', serverKey)
            .update(`${clientFirstBare},${serverFirst},${withoutProof}`)
            .digest('base64');
          const final =
            this.ending === 'no-final'
              ? []
              : [
                  auth(
                    12,
                    `v=${this.ending === 'right-final' ? signature : crypto.randomBytes(32).toString('base64')}`,
                  ),
                ];
          // All in one write: the client must not read past a refused SASLFinal.
          socket.write(Buffer.concat([...final, auth(0), ready]));
          this.afterLogin.push(seen);
          stage = 3;
        } else if (type !== 'X') {
          seen.push(type);
          batch.push(type);
          // Every statement has no parameters and returns no rows: enough for the control's client.
          if (type === 'S' || type === 'Q') {
            const reply = (kind: string, payload = Buffer.alloc(0)) => {
              const message = Buffer.alloc(5 + payload.length);
              message[0] = kind.charCodeAt(0);
              message.writeInt32BE(4 + payload.length, 1);
              payload.copy(message, 5);
              return message;
            };
            const replies = batch.flatMap((kind) =>
              kind === 'P'
                ? [reply('1')]
                : kind === 'D'
                  ? [reply('t', Buffer.from([0, 0])), reply('n')]
                  : kind === 'B'
                    ? [reply('2')]
                    : kind === 'E' || kind === 'Q'
                      ? [reply('C', Buffer.from('SELECT 0\0'))]
                      : [],
            );
            socket.write(Buffer.concat([...replies, ready]));
            batch.length = 0;
          }
        }
      }
    });
  }
}

describe('SCRAM: a login is accepted only after the server proves it knows the password', () => {
  const password = 'scram-secret';
  const settle = () => new Promise((resolve) => setTimeout(resolve, 200));

  for (const ending of ['no-final', 'wrong-final'] as const) {
    test(`AuthenticationOk with ${ending === 'no-final' ? 'no SASLFinal' : 'a wrong SASLFinal'}: both paths refuse and send no query`, async () => {
      const { fake, port } = await FakeScramServer.start(ending, password);
      const url = `postgres://app:${password}@127.0.0.1:${port}/db?sslmode=disable`;
      try {
        await assert.rejects(WireConnection.connect(wireTarget(url, {})), /SCRAM: the server/);
        const sql = openDatabase(url, { max: 1, name: 'scram-test' });
        try {
          await assert.rejects(
            sql`select 1`,
            ending === 'no-final'
              ? /SCRAM: the server accepted the login without proving/
              : /did not return the correct signature/,
          );
        } finally {
          await sql.end({ timeout: 1 });
        }
        await settle();
        assert.equal(fake.afterLogin.length, 2, 'both paths reached the end of the SCRAM exchange');
        assert.deepEqual(fake.afterLogin, [[], []], 'a path sent messages to a server that did not prove the password');
      } finally {
        await fake.close();
      }
    });
  }

  test("the fake server with the right SASLFinal is accepted by both (the test's control)", async () => {
    const { fake, port } = await FakeScramServer.start('right-final', password);
    const url = `postgres://app:${password}@127.0.0.1:${port}/db?sslmode=disable`;
    try {
      const connection = await WireConnection.connect(wireTarget(url, {}));
      connection.close();
      const sql = openDatabase(url, { max: 1, name: 'scram-test' });
      try {
        assert.deepEqual([...(await sql`select 1`)], []); // the fake server's answer to everything
      } finally {
        await sql.end({ timeout: 1 });
      }
      assert.deepEqual(fake.afterLogin[0], []);
      assert.ok((fake.afterLogin[1]?.length ?? 0) > 0, 'the postgres client sent its query after a verified login');
    } finally {
      await fake.close();
    }
  });
});

test('the postgres client pool answers every query promptly while Postgres is unreachable', async () => {
  // A connect failure must reach the client as socket events (src/db/connect.ts, failedSocket):
  // otherwise each failure leaves a connection "connecting" for good and, the pool used up, the
  // next query hangs.
  for (const url of [
    'postgres://postgres@localhost:5999/x?host=%2Fnonexistent-dir',
    'postgres://postgres@127.0.0.1:1/x?sslmode=disable',
  ]) {
    const sql = openDatabase(url, { max: 2, name: 'unreachable' });
    try {
      for (let i = 0; i < 5; i++) {
        const started = performance.now();
        await assert.rejects(sql`select 1`, /ENOENT|ECONNREFUSED/);
        assert.ok(performance.now() - started < 2000, `query ${i} took ${Math.round(performance.now() - started)} ms`);
      }
    } finally {
      await sql.end({ timeout: 1 });
    }
  }
});
