import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../src/config.js';
import { DatabaseUrlError, parseDatabaseUrl } from '../src/db/database-url.js';

// The one reading of DATABASE_URL (src/db/database-url.ts): pure, so the edge cases are cheap here.
// test/postgres-tls.test.ts checks that both connection paths honour it against a real server.

const parse = (url: string, env: NodeJS.ProcessEnv = {}) => parseDatabaseUrl(url, env);
const refused = (url: string, pattern: RegExp, env: NodeJS.ProcessEnv = {}) =>
  assert.throws(
    () => parse(url, env),
    (error: Error) => error instanceof DatabaseUrlError && pattern.test(error.message),
  );

test('the parts of a URL, percent-decoded; postgresql:// too', () => {
  const target = parse(
    'postgresql://us%40er:p%40ss%2Fw%3Ard+x@db.example.com:6543/my%20db?application_name=ingest%20a',
  );
  assert.equal(target.host, 'db.example.com');
  assert.equal(target.port, 6543);
  assert.equal(target.user, 'us@er');
  assert.equal(target.password, 'p@ss/w:rd+x');
  assert.equal(target.database, 'my db');
  assert.equal(target.applicationName, 'ingest a');
  assert.equal(target.path, null);
  assert.equal(target.connectTimeoutMs, 10_000);
  // A plus in a query value stays a plus (libpq), unlike form encoding.
  assert.equal(parse('postgres://h/d?application_name=a+b').applicationName, 'a+b');
  assert.equal(parse('postgres://[::1]:5433/d').host, '::1');
});

test('Unix sockets: ?host=/dir, a percent-encoded directory as the host, or PGHOST', () => {
  const query = parse('postgres://postgres@localhost:5433/triggers?host=%2Fvar%2Flib%2Fpg');
  assert.equal(query.path, '/var/lib/pg/.s.PGSQL.5433');
  assert.equal(query.tls, null);
  assert.equal(query.sslmode, 'disable');
  assert.equal(parse('postgres://%2Ftmp%2Fsock/d').path, '/tmp/sock/.s.PGSQL.5432');
  assert.equal(
    parse('postgres:///d', { PGHOST: '/run/postgresql', PGPORT: '6000' }).path,
    '/run/postgresql/.s.PGSQL.6000',
  );
  // A TCP host in ?host= is a host, not a directory.
  assert.equal(parse('postgres://ignored/d?host=db2').host, 'db2');
});

test('PG* fallbacks fill what the URL leaves out; the URL wins', () => {
  const env = {
    PGHOST: 'envhost',
    PGPORT: '7000',
    PGUSER: 'envuser',
    PGPASSWORD: 'envpass',
    PGDATABASE: 'envdb',
    PGAPPNAME: 'envapp',
    PGCONNECT_TIMEOUT: '3',
    PGSSLMODE: 'require',
  };
  const fromEnv = parse('postgres://', env);
  assert.deepEqual(
    [
      fromEnv.host,
      fromEnv.port,
      fromEnv.user,
      fromEnv.password,
      fromEnv.database,
      fromEnv.applicationName,
      fromEnv.connectTimeoutMs,
      fromEnv.sslmode,
    ],
    ['envhost', 7000, 'envuser', 'envpass', 'envdb', 'envapp', 3000, 'require'],
  );
  const fromUrl = parse('postgres://u:p@h:1/d?sslmode=disable&application_name=a&connect_timeout=5', env);
  assert.deepEqual(
    [
      fromUrl.host,
      fromUrl.port,
      fromUrl.user,
      fromUrl.password,
      fromUrl.database,
      fromUrl.applicationName,
      fromUrl.connectTimeoutMs,
      fromUrl.sslmode,
    ],
    ['h', 1, 'u', 'p', 'd', 'a', 5000, 'disable'],
  );
  // libpq's defaults: the OS user, the database named after the user, sslmode prefer.
  const bare = parse('postgres://h');
  assert.equal(bare.user, os.userInfo().username);
  assert.equal(bare.database, bare.user);
  assert.equal(bare.sslmode, 'prefer');
  assert.equal(parse('postgres://h?connect_timeout=1').connectTimeoutMs, 2000); // libpq: under 2 counts as 2
});

test("sslmode, ssl=true and sslrootcert map onto libpq's table", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dburl-'));
  try {
    const ca = path.join(dir, 'ca.crt');
    fs.writeFileSync(ca, 'not parsed here');
    const tlsOf = (url: string, env: NodeJS.ProcessEnv = {}) => {
      const target = parse(url, env);
      return {
        mode: target.sslmode,
        verifyChain: target.tls?.rejectUnauthorized ?? null,
        ca: Boolean(target.tls?.ca),
        servername: target.tls?.servername,
      };
    };
    assert.deepEqual(tlsOf('postgres://h/d?sslmode=disable'), {
      mode: 'disable',
      verifyChain: null,
      ca: false,
      servername: undefined,
    });
    assert.deepEqual(tlsOf('postgres://h/d?sslmode=prefer'), {
      mode: 'prefer',
      verifyChain: false,
      ca: false,
      servername: 'h',
    });
    assert.deepEqual(tlsOf(`postgres://h/d?sslmode=prefer&sslrootcert=${ca}`), {
      mode: 'prefer',
      verifyChain: true,
      ca: true,
      servername: 'h',
    });
    assert.deepEqual(tlsOf('postgres://h/d?sslmode=require'), {
      mode: 'require',
      verifyChain: false,
      ca: false,
      servername: 'h',
    });
    assert.deepEqual(tlsOf(`postgres://h/d?sslmode=require&sslrootcert=${ca}`), {
      mode: 'verify-ca',
      verifyChain: true,
      ca: true,
      servername: 'h',
    });
    assert.deepEqual(tlsOf(`postgres://h/d?sslmode=verify-ca&sslrootcert=${ca}`), {
      mode: 'verify-ca',
      verifyChain: true,
      ca: true,
      servername: 'h',
    });
    assert.deepEqual(tlsOf('postgres://127.0.0.1/d?sslmode=verify-full'), {
      mode: 'verify-full',
      verifyChain: true,
      ca: false,
      servername: undefined,
    });
    assert.deepEqual(tlsOf('postgres://h/d?ssl=true'), {
      mode: 'verify-full',
      verifyChain: true,
      ca: false,
      servername: 'h',
    });
    assert.deepEqual(tlsOf('postgres://h/d?ssl=false'), {
      mode: 'disable',
      verifyChain: null,
      ca: false,
      servername: undefined,
    });
    assert.deepEqual(tlsOf('postgres://h/d?sslrootcert=system'), {
      mode: 'verify-full',
      verifyChain: true,
      ca: false,
      servername: 'h',
    });
    assert.deepEqual(tlsOf('postgres://h/d?sslsni=0&sslmode=require').servername, undefined);
    assert.deepEqual(tlsOf('postgres://h/d', { PGSSLMODE: 'verify-ca', PGSSLROOTCERT: ca }), {
      mode: 'verify-ca',
      verifyChain: true,
      ca: true,
      servername: 'h',
    });
    assert.equal(tlsOf('postgres://h/d?sslmode=disable', { PGSSLMODE: 'verify-full' }).mode, 'disable');
    // verify-full checks the host as written in the URL; verify-ca checks no name.
    const full = parse(`postgres://db.example.com/d?sslmode=verify-full&sslrootcert=${ca}`).tls!;
    const cert = { subject: { CN: 'other.example.com' }, subjectaltname: 'DNS:other.example.com' } as never;
    assert.ok(full.checkServerIdentity!('ignored', cert) instanceof Error);
    assert.equal(
      parse(`postgres://db.example.com/d?sslmode=verify-ca&sslrootcert=${ca}`).tls!.checkServerIdentity!('x', cert),
      undefined,
    );
    // Client certificates are read at start, both files.
    assert.ok(parse(`postgres://h/d?sslmode=require&sslcert=${ca}&sslkey=${ca}`).tls!.cert);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('what cannot be honoured is refused, by name, without echoing the password', () => {
  refused('mysql://h/d', /postgres:\/\//);
  refused('postgres://a,b/d', /multiple hosts/);
  refused('postgres://h/d?host=a,b', /multiple hosts/);
  refused('postgres://h/d?sslmode=bogus', /sslmode must be one of/);
  refused('postgres://h/d', /^PGSSLMODE: sslmode must be one of/, { PGSSLMODE: 'bogus' });
  refused('postgres://h/d?sslmode=allow', /sslmode=allow is not supported/);
  refused('postgres://h/d?ssl=require', /ssl must be true/);
  refused('postgres://h/d?ssl=true&sslmode=require', /not both/);
  refused('postgres://h/d?frobnicate=1', /unknown parameter "frobnicate"/);
  refused('postgres://h/d?sslmode=require&sslmode=disable', /given twice/);
  refused('postgres://h/d?channel_binding=require', /channel_binding=require is not supported/);
  refused('postgres://h/d?target_session_attrs=read-write', /target_session_attrs=read-write is not supported/);
  refused('postgres://h/d', /PGTARGETSESSIONATTRS/, { PGTARGETSESSIONATTRS: 'any' });
  refused('postgres://h/d?gssencmode=require', /gssencmode/);
  refused('postgres://h/d?sslnegotiation=direct', /sslnegotiation/);
  refused('postgres://h/d?client_encoding=LATIN1', /client_encoding/);
  refused('postgres://h/d?sslpassword=x', /sslpassword is not supported/);
  refused('postgres://h/d?hostaddr=10.0.0.1', /hostaddr is not supported/);
  refused('postgres://h/d?fallback_application_name=x', /fallback_application_name is not supported/);
  refused('postgres://h/d', /PGSERVICE/, { PGSERVICE: 'prod' });
  refused(
    'postgres://h/d?sslmode=verify-ca&sslrootcert=/no/such/ca.crt',
    /sslrootcert: cannot read \/no\/such\/ca.crt \(ENOENT\)/,
  );
  refused('postgres://h/d?sslrootcert=system&sslmode=require', /sslrootcert=system requires sslmode=verify-full/);
  refused('postgres://h/d?sslmode=require&sslcert=/x', /sslcert and sslkey must be given together/);
  refused('postgres://h/d?sslmode=require&host=/run/pg', /cannot be honoured on a Unix socket/);
  refused('postgres://h:0/d', /port must be from 1 to 65535/);
  refused('postgres://h/d?connect_timeout=0', /connect_timeout/);
  refused('postgres://h/d?connect_timeout=abc', /connect_timeout/);
  refused('postgres://u:%zz@h/d', /password has a malformed percent-escape/);
  assert.throws(
    () => parse('postgres://user:s3cret-value@h/d?bogus=1'),
    (error: Error) => !error.message.includes('s3cret-value'),
  );
});

test('the server stops at start with one line naming DATABASE_URL', () => {
  assert.throws(
    () => loadConfig({ DATABASE_URL: 'postgres://h/d?sslmode=allow' }),
    (error: Error) =>
      error instanceof ConfigError && /^DATABASE_URL: sslmode=allow is not supported/.test(error.message),
  );
  assert.throws(
    () => loadConfig({ DATABASE_URL: 'postgres://h/d?sslmode=verify-full&sslrootcert=/nope' }),
    /DATABASE_URL: sslrootcert: cannot read/,
  );
  assert.equal(
    loadConfig({ DATABASE_URL: 'postgres://h/d?sslmode=require' }).databaseUrl,
    'postgres://h/d?sslmode=require',
  );
  // Without DATABASE_URL the PG* variables reach the embedded Postgres's socket: checked too.
  assert.throws(
    () => loadConfig({ PGSSLMODE: 'verify-full' }),
    (error: Error) =>
      error instanceof ConfigError &&
      /^PG\* environment \(for the embedded Postgres\): sslmode=verify-full cannot be honoured on a Unix socket/.test(
        error.message,
      ),
  );
  assert.equal(loadConfig({ PGSSLMODE: 'prefer' }).databaseUrl, null);
});

test('FLUSH_CONCURRENCY: 1 beside the embedded Postgres (it shares the cores), 2 with DATABASE_URL; a value given wins', () => {
  assert.equal(loadConfig({}).flushConcurrency, 1);
  assert.equal(loadConfig({ DATABASE_URL: 'postgres://h/d' }).flushConcurrency, 2);
  assert.equal(loadConfig({ FLUSH_CONCURRENCY: '3' }).flushConcurrency, 3);
  assert.equal(loadConfig({ DATABASE_URL: 'postgres://h/d', FLUSH_CONCURRENCY: '1' }).flushConcurrency, 1);
});
