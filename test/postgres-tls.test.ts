import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import postgres from 'postgres';
import { openDatabase } from '../src/db/connect.js';
import { CopyPool } from '../src/db/copy-pool.js';
import { wireTarget } from '../src/db/wire.js';
import { hasOpenssl, hasPostgres15, SystemPostgres } from './helpers/system-postgres.js';

// One DATABASE_URL, two ways of connecting: the `postgres` client (src/db/connect.ts) and the
// ingest path's COPY connections (src/db/wire.ts). For every sslmode, against a real PostgreSQL 15
// with certificates from a throwaway CA, both must accept, or both refuse.

const missing = !hasPostgres15();
if (missing && process.env.CI === 'true')
  throw new Error('PostgreSQL 15 binaries are required in CI (apt-get install postgresql-15)');
if (!hasOpenssl() && process.env.CI === 'true') throw new Error('openssl is required in CI (apt-get install openssl)');
const skip = missing
  ? 'PostgreSQL 15 server binaries not installed (apt-get install postgresql-15)'
  : hasOpenssl()
    ? false
    : 'openssl not installed (apt-get install openssl)';

const COPY = 'copy t (id, note) from stdin';
let nextId = 1;

/** A CA, and leaf certificates it signs; EC keys, quick to make. */
class TestCa {
  readonly cert: string;
  readonly key: string;

  constructor(
    private readonly dir: string,
    readonly name: string,
  ) {
    this.key = path.join(dir, `${name}.key`);
    this.cert = path.join(dir, `${name}.crt`);
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '2',
        '-subj',
        `/CN=Triggers test ${name}`,
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
        '-keyout',
        this.key,
        '-out',
        this.cert,
      ],
      { stdio: 'ignore' },
    );
  }

  /** A leaf certificate for `cn` with `san` (e.g. DNS:localhost); returns its cert and key paths. */
  issue(
    name: string,
    cn: string,
    san: string | null,
    usage: 'serverAuth' | 'clientAuth',
  ): { cert: string; key: string } {
    const base = path.join(this.dir, `${this.name}-${name}`);
    const ext = `${base}.ext`;
    fs.writeFileSync(
      ext,
      `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=${usage}\n${san ? `subjectAltName=${san}\n` : ''}`,
    );
    execFileSync(
      'openssl',
      [
        'req',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-subj',
        `/CN=${cn}`,
        '-keyout',
        `${base}.key`,
        '-out',
        `${base}.csr`,
      ],
      { stdio: 'ignore' },
    );
    execFileSync(
      'openssl',
      [
        'x509',
        '-req',
        '-in',
        `${base}.csr`,
        '-CA',
        this.cert,
        '-CAkey',
        this.key,
        '-CAcreateserial',
        '-days',
        '2',
        '-extfile',
        ext,
        '-out',
        `${base}.crt`,
      ],
      { stdio: 'ignore' },
    );
    fs.chmodSync(`${base}.key`, 0o600);
    return { cert: `${base}.crt`, key: `${base}.key` };
  }
}

type Outcome = 'plain' | 'tls' | 'refused';

/** The message `work` rejects with; fails the test if it resolves. */
async function failure(work: Promise<unknown>, ifResolved: string): Promise<string> {
  try {
    await work;
  } catch (error) {
    return (error as Error).message;
  }
  assert.fail(ifResolved);
}

describe('DATABASE_URL TLS: the postgres client and the COPY connections agree', { skip }, () => {
  let pg: SystemPostgres;
  let admin: postgres.Sql;
  let certs: string;
  let ca1: TestCa;
  let ca2: TestCa;
  let server1: { cert: string; key: string };
  let server2: { cert: string; key: string };
  let client1: { cert: string; key: string };
  const password = 'tls pässword/' + Math.random().toString(36).slice(2);
  // The server certificate names localhost only: 127.0.0.1 is the "wrong host name" for verify-full.
  const url = (host: 'localhost' | '127.0.0.1', query = '', user = 'app') =>
    `postgres://${user}:${encodeURIComponent(password)}@${host}:${pg.port}/postgres${query}`;

  /** Opens each path from `databaseUrl`: a query on the `postgres` client, a COPY on a CopyPool. */
  async function outcome(
    databaseUrl: string,
    label: string,
    env: NodeJS.ProcessEnv = {},
  ): Promise<{ client: Outcome; wire: Outcome; errors: string[] }> {
    const errors: string[] = [];
    let client: Outcome = 'refused';
    const sql = openDatabase(databaseUrl, { max: 1, name: `${label}-client` }, env);
    try {
      const [row] = await sql`select ssl from pg_stat_ssl where pid = pg_backend_pid()`;
      client = row!.ssl ? 'tls' : 'plain';
    } catch (error) {
      errors.push(`client: ${(error as Error).message}`);
    } finally {
      await sql.end({ timeout: 1 });
    }
    let wire: Outcome = 'refused';
    const pool = new CopyPool(wireTarget(databaseUrl, { application_name: `${label}-wire` }, env), 1);
    try {
      assert.equal(await pool.copy(COPY, `${nextId++}\t${label}\n`), 1);
      const [row] =
        await admin`select s.ssl from pg_stat_ssl s join pg_stat_activity a using (pid) where a.application_name = ${`${label}-wire`}`;
      wire = row!.ssl ? 'tls' : 'plain';
    } catch (error) {
      errors.push(`wire: ${(error as Error).message}`);
    } finally {
      pool.close();
    }
    return { client, wire, errors };
  }

  async function expectBoth(
    databaseUrl: string,
    label: string,
    expected: Outcome,
    env: NodeJS.ProcessEnv = {},
  ): Promise<string[]> {
    const { client, wire, errors } = await outcome(databaseUrl, label, env);
    assert.deepEqual({ client, wire }, { client: expected, wire: expected }, `${label}: ${errors.join(' | ')}`);
    return errors;
  }

  before(async () => {
    pg = await SystemPostgres.start();
    admin = postgres(pg.url, { max: 1, onnotice: () => {} });
    await admin`create table t (id integer primary key, note text not null)`;
    await admin`grant all on t to public`;
    await admin.unsafe(
      `set password_encryption = 'scram-sha-256'; create role app login password '${password.replace(/'/g, "''")}'; create role certuser login`,
    );
    certs = fs.mkdtempSync(path.join(os.tmpdir(), 'triggers-tls-'));
    ca1 = new TestCa(certs, 'ca1');
    ca2 = new TestCa(certs, 'ca2');
    server1 = ca1.issue('server', 'localhost', 'DNS:localhost', 'serverAuth');
    server2 = ca2.issue('server', 'localhost', 'DNS:localhost', 'serverAuth');
    client1 = ca1.issue('certuser', 'certuser', null, 'clientAuth');
    await pg.reconfigure([], ['hostssl all certuser 127.0.0.1/32 cert', 'host all app 127.0.0.1/32 scram-sha-256']);
  });

  after(async () => {
    await admin?.end({ timeout: 1 });
    await pg?.stop();
    if (certs) fs.rmSync(certs, { recursive: true, force: true });
  });

  test('a server without TLS: disable, prefer and the default connect in plain text; require and stronger refuse', async () => {
    await expectBoth(url('localhost', '?sslmode=disable'), 'notls-disable', 'plain');
    await expectBoth(url('localhost'), 'notls-default', 'plain');
    await expectBoth(url('localhost', '?sslmode=prefer'), 'notls-prefer', 'plain');
    const errors = await expectBoth(url('localhost', '?sslmode=require'), 'notls-require', 'refused');
    assert.ok(
      errors.every((error) => /does not offer TLS, and sslmode=require requires it/.test(error)),
      errors.join('\n'),
    );
    await expectBoth(url('localhost', `?sslmode=verify-ca&sslrootcert=${ca1.cert}`), 'notls-verify-ca', 'refused');
    await expectBoth(url('localhost', `?sslmode=verify-full&sslrootcert=${ca1.cert}`), 'notls-verify-full', 'refused');
    await expectBoth(url('localhost', `?ssl=true&sslrootcert=${ca1.cert}`), 'notls-ssl-true', 'refused');
  });

  test('a server with TLS: every sslmode, root certificate and host name, the same on both paths', async () => {
    pg.installFile('server.crt', fs.readFileSync(server1.cert));
    pg.installFile('server.key', fs.readFileSync(server1.key));
    pg.installFile('root.crt', fs.readFileSync(ca1.cert));
    await pg.reconfigure(['ssl = on', "ssl_ca_file = 'root.crt'"]);

    const cases: Array<[label: string, databaseUrl: string, expected: Outcome, env?: NodeJS.ProcessEnv]> = [
      ['disable', url('localhost', '?sslmode=disable'), 'plain'],
      ['default-is-prefer', url('localhost'), 'tls'],
      ['prefer', url('localhost', '?sslmode=prefer'), 'tls'],
      // libpq: with a root certificate, prefer and require verify the chain.
      ['prefer-wrong-ca', url('localhost', `?sslmode=prefer&sslrootcert=${ca2.cert}`), 'refused'],
      ['require', url('127.0.0.1', '?sslmode=require'), 'tls'],
      ['require-ca', url('127.0.0.1', `?sslmode=require&sslrootcert=${ca1.cert}`), 'tls'],
      ['require-wrong-ca', url('localhost', `?sslmode=require&sslrootcert=${ca2.cert}`), 'refused'],
      // Without sslrootcert: the CAs Node trusts, which do not include our throwaway one.
      ['verify-ca-no-root', url('localhost', '?sslmode=verify-ca'), 'refused'],
      ['verify-ca', url('127.0.0.1', `?sslmode=verify-ca&sslrootcert=${ca1.cert}`), 'tls'],
      ['verify-ca-wrong-ca', url('localhost', `?sslmode=verify-ca&sslrootcert=${ca2.cert}`), 'refused'],
      ['verify-full', url('localhost', `?sslmode=verify-full&sslrootcert=${ca1.cert}`), 'tls'],
      ['verify-full-wrong-host', url('127.0.0.1', `?sslmode=verify-full&sslrootcert=${ca1.cert}`), 'refused'],
      ['verify-full-wrong-ca', url('localhost', `?sslmode=verify-full&sslrootcert=${ca2.cert}`), 'refused'],
      ['ssl-true', url('localhost', `?ssl=true&sslrootcert=${ca1.cert}`), 'tls'],
      ['ssl-true-wrong-host', url('127.0.0.1', `?ssl=true&sslrootcert=${ca1.cert}`), 'refused'],
      ['ssl-true-no-root', url('localhost', '?ssl=true'), 'refused'],
      ['root-system', url('localhost', '?sslrootcert=system'), 'refused'],
      ['env-verify-full', url('localhost'), 'tls', { PGSSLMODE: 'verify-full', PGSSLROOTCERT: ca1.cert }],
      [
        'env-verify-full-wrong-host',
        url('127.0.0.1'),
        'refused',
        { PGSSLMODE: 'verify-full', PGSSLROOTCERT: ca1.cert },
      ],
      [
        'url-beats-env',
        url('localhost', '?sslmode=disable'),
        'plain',
        { PGSSLMODE: 'verify-full', PGSSLROOTCERT: ca2.cert },
      ],
      // Client certificates (hostssl … cert): presented on both paths, or refused by the server on both.
      [
        'client-cert',
        `postgres://certuser@localhost:${pg.port}/postgres?sslmode=verify-full&sslrootcert=${ca1.cert}&sslcert=${client1.cert}&sslkey=${client1.key}`,
        'tls',
      ],
      [
        'client-cert-missing',
        `postgres://certuser@localhost:${pg.port}/postgres?sslmode=verify-full&sslrootcert=${ca1.cert}`,
        'refused',
      ],
    ];
    for (const [label, databaseUrl, expected, env] of cases) {
      const errors = await expectBoth(databaseUrl, label, expected, env);
      // Certificate refusals come from the one TLS opener, with the sslmode named.
      if (expected === 'refused' && label !== 'client-cert-missing') {
        assert.ok(
          errors.every((error) => /TLS to Postgres at .*\(sslmode=(prefer|verify-ca|verify-full)\)/.test(error)),
          errors.join('\n'),
        );
      }
    }
  });

  test('client_encoding is UTF8 on both paths', async () => {
    const sql = openDatabase(url('localhost', `?sslmode=verify-full&sslrootcert=${ca1.cert}`), {
      max: 1,
      name: 'encoding-client',
    });
    try {
      assert.equal((await sql`show client_encoding`)[0]!.client_encoding, 'UTF8');
    } finally {
      await sql.end({ timeout: 1 });
    }
    const pool = new CopyPool(
      wireTarget(url('localhost', `?sslmode=verify-full&sslrootcert=${ca1.cert}`), {
        application_name: 'encoding-wire',
      }),
      1,
    );
    try {
      const id = nextId++;
      assert.equal(await pool.copy(COPY, `${id}\tünïcödé ✓\n`), 1);
      assert.equal((await admin`select note from t where id = ${id}`)[0]!.note, 'ünïcödé ✓');
    } finally {
      pool.close();
    }
  });

  test('a certificate from another CA appearing after start: connections opened later are refused', async () => {
    const verified = [
      ['rot-verify-ca', url('127.0.0.1', `?sslmode=verify-ca&sslrootcert=${ca1.cert}`)],
      ['rot-verify-full', url('localhost', `?sslmode=verify-full&sslrootcert=${ca1.cert}`)],
      ['rot-ssl-true', url('localhost', `?ssl=true&sslrootcert=${ca1.cert}`)],
    ] as const;
    const opened = verified.map(([label, databaseUrl]) => ({
      label,
      sql: openDatabase(databaseUrl, { max: 1, name: `${label}-client` }),
      pool: new CopyPool(wireTarget(databaseUrl, { application_name: `${label}-wire` }), 1),
      // Made at start like the app's, first used after the switch: the ingest path's lazy connect.
      lazy: new CopyPool(wireTarget(databaseUrl, { application_name: `${label}-lazy` }), 1),
    }));
    // sslmode=require verifies nothing (libpq's meaning): it goes on connecting, as a contrast.
    const unverified = new CopyPool(
      wireTarget(url('localhost', '?sslmode=require'), { application_name: 'rot-require-wire' }),
      1,
    );
    try {
      for (const { sql, pool } of opened) {
        await sql`select 1`;
        assert.equal(await pool.copy(COPY, `${nextId++}\tbefore\n`), 1);
      }
      assert.equal(await unverified.copy(COPY, `${nextId++}\tbefore\n`), 1);

      // The server (or someone in its place) now presents a certificate from another CA.
      pg.installFile('server.crt', fs.readFileSync(server2.cert));
      pg.installFile('server.key', fs.readFileSync(server2.key));
      await pg.reconfigure([]);
      await admin`select pg_terminate_backend(pid) from pg_stat_activity where application_name like 'rot-%'`;

      const certificateRefusal = /TLS to Postgres at .*(unable to verify|certificate)/;
      for (const { label, sql, pool, lazy } of opened) {
        await assert.rejects(lazy.copy(COPY, `${nextId++}\tafter\n`), certificateRefusal, label);
        // The terminated connections may first report their own end; no attempt may succeed.
        const seen: string[] = [];
        for (let attempt = 0; attempt < 20 && !seen.some((error) => certificateRefusal.test(error)); attempt++) {
          seen.push(await failure(sql`select 1`, `${label}: the postgres client connected`));
          seen.push(await failure(pool.copy(COPY, `${nextId++}\tafter\n`), `${label}: the COPY pool connected`));
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        assert.ok(
          seen.some((error) => certificateRefusal.test(error)),
          `${label}: ${seen.join(' | ')}`,
        );
      }
      let stored = 0;
      for (let attempt = 0; attempt < 20 && stored === 0; attempt++) {
        stored = await unverified.copy(COPY, `${nextId++}\tafter\n`).catch(() => 0);
      }
      assert.equal(stored, 1);
    } finally {
      for (const { sql, pool, lazy } of opened) {
        pool.close();
        lazy.close();
        await sql.end({ timeout: 1 });
      }
      unverified.close();
    }
  });
});
