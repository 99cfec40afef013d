import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openDatabase, type Sql } from '../src/db/connect.js';
import { call, createOrgWithKey } from './helpers/api.js';
import { boundedCall, holdLock, isUnavailable, lockWaiter, terminateLockWaiter } from './helpers/db-faults.js';
import { sleep } from './helpers/load.js';
import { TestPostgres } from './helpers/postgres.js';
import { workersOf } from './helpers/processes.js';
import { TestServer } from './helpers/server.js';

/**
 * Issue 23: no process dies of a database fault. A backend is terminated (what a failover, a
 * restart or pg_terminate_backend does) while a query waits on a lock held by the test, so the
 * loss lands at a known point: inside a transaction, on a reserved connection, during a
 * connection's startup. The `postgres` client used to end the process there (patches/README.md);
 * these cases fail without patches/postgres+3.4.10.patch.
 */

let pg: TestPostgres;
const pools: Sql[] = [];

before(async () => {
  pg = await TestPostgres.start();
});

after(async () => {
  for (const pool of pools) await pool.end({ timeout: 1 });
  await pg?.stop();
});

async function database(): Promise<{ name: string; url: string; admin: Sql }> {
  const name = `f_${Math.random().toString(36).slice(2, 10)}`;
  const url = await pg.createDatabase(name);
  const admin = pg.connect(name);
  pools.push(admin);
  await admin`create table locked (id int primary key)`;
  await admin`insert into locked values (1)`;
  return { name, url, admin };
}

function appPool(url: string, max: number): Sql {
  const sql = openDatabase(url, { max, name: 'app' });
  pools.push(sql);
  return sql;
}

/** Settles `promise` or fails after `ms`: a query that never settles is a hang, and a failure. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not settled within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

const codeOf = (promise: Promise<unknown>) =>
  promise.then(
    () => 'ok',
    (error: { code?: string }) => error.code ?? String(error),
  );

test('client: a transaction whose backend is terminated while it waits on a lock rejects, and the pool serves the next query', async () => {
  const { name, url, admin } = await database();
  const sql = appPool(url, 2);
  await sql`select 1`;
  const lock = await holdLock(admin, 'lock table locked in access exclusive mode');
  // The inbox read's shape: a transaction with two pipelined statements, the second waiting.
  const read = sql.begin(async (tx) => {
    const [, rows] = await Promise.all([
      tx`select set_config('plan_cache_mode', 'force_generic_plan', true)`,
      tx`select * from locked`,
    ]);
    return rows;
  });
  await terminateLockWaiter(admin, name, 'app');
  // Its ROLLBACK went to a socket already gone: an uncaught TypeError from a setImmediate.
  assert.match(await within(codeOf(read), 5000, 'the transaction'), /CONNECTION_CLOSED|57P01/);
  lock.release();
  await lock.done;
  await sleep(50); // the setImmediate that used to throw
  for (let i = 0; i < 4; i++)
    assert.deepEqual([...(await within(sql`select ${i}::int as n`, 5000, 'the next query'))], [{ n: i }]);
});

test('client: a reserved connection whose backend is terminated refuses its next query, and release() leaves the pool working', async () => {
  const { name, url, admin } = await database();
  const sql = appPool(url, 1);
  const reserved = await sql.reserve();
  const lock = await holdLock(admin, 'lock table locked in access exclusive mode');
  const waiting = reserved`select * from locked`;
  waiting.catch(() => {}); // a query is sent when first awaited
  await terminateLockWaiter(admin, name, 'app');
  assert.match(await within(codeOf(waiting), 5000, 'the reserved query'), /CONNECTION_CLOSED|57P01/);
  lock.release();
  await lock.done;
  // The retention job's `finally`: one more statement on the dead connection, then release().
  assert.equal(
    await within(codeOf(reserved`select pg_advisory_unlock(${1})`), 5000, 'a query on the dead reservation'),
    'CONNECTION_CLOSED',
  );
  reserved.release();
  // A pool of one: the released dead connection must not be handed out again as it is.
  for (let i = 0; i < 3; i++)
    assert.deepEqual([...(await within(sql`select ${i}::int as n`, 5000, 'a pool query after release'))], [{ n: i }]);
  const again = await within(sql.reserve(), 5000, 'a new reservation');
  assert.deepEqual([...(await again`select 7 as n`)], [{ n: 7 }]);
  again.release();
});

test('client: a connection terminated during its startup (the array types fetch) retries the query instead of ending the process', async () => {
  const { name, url, admin } = await database();
  const sql = appPool(url, 1); // no connection yet: the first query opens one
  // One connection with its statements prepared: with pg_type locked, parsing a new one waits too.
  const watcher = openDatabase(url, { max: 1, name: 'watcher' });
  pools.push(watcher);
  await terminateLockWaiter(watcher, name, 'nobody', 1).catch(() => {});
  await watcher`select pg_terminate_backend(${0})`;
  // Every new session of the client first reads pg_type; with it locked, that read waits.
  const lock = await holdLock(admin, 'lock table pg_catalog.pg_type in access exclusive mode');
  const query = sql`select 42 as n`;
  query.catch(() => {});
  try {
    await terminateLockWaiter(watcher, name, 'app');
  } finally {
    lock.release();
    await lock.done;
  }
  // The types fetch of the lost session used to reject without a handler on the next session's
  // first ReadyForQuery (an unhandled rejection ends the process), taking this query with it.
  assert.deepEqual([...(await within(query, 10_000, 'the query'))], [{ n: 42 }]);
  await sleep(100);
  assert.deepEqual([...(await within(sql`select 43 as n`, 5000, 'the next query'))], [{ n: 43 }]);
});

test('client: a reserve() waiting for the only connection is still served when that connection is terminated', async () => {
  const { name, url, admin } = await database();
  const sql = appPool(url, 1);
  const lock = await holdLock(admin, 'lock table locked in access exclusive mode');
  const busy = sql`select * from locked`;
  busy.catch(() => {});
  const pid = await lockWaiter(admin, name, 'app');
  const reservation = sql.reserve(); // queued: the only connection is busy
  await admin`select pg_terminate_backend(${pid})`;
  lock.release();
  await lock.done;
  // It was taken out of the queue as the reconnect's initial query and dropped: never settled.
  const reserved = await within(reservation, 10_000, 'the queued reserve()');
  assert.deepEqual([...(await reserved`select 1 as n`)], [{ n: 1 }]);
  reserved.release();
  assert.deepEqual([...(await within(sql`select 2 as n`, 5000, 'a pool query'))], [{ n: 2 }]);
});

test('client: a reserve() whose connection fails to open is rejected, and the pool still serves after it', async () => {
  const { name, url } = await database();
  const sql = appPool(url, 1); // no connection yet: the reserve opens one
  const cluster = pg.connect('postgres');
  pools.push(cluster);
  await cluster.unsafe(`alter database ${name} with allow_connections false`);
  try {
    assert.equal(await within(codeOf(sql.reserve()), 10_000, 'the reserve()'), '55000');
  } finally {
    await cluster.unsafe(`alter database ${name} with allow_connections true`);
  }
  // A waiting reserve stays queued when a connection closes (the #1195 case above); rejected, it must
  // leave the queue, or the next connection to open is handed to it and lost to the pool.
  for (let i = 0; i < 3; i++)
    assert.deepEqual([...(await within(sql`select ${i}::int as n`, 5000, 'a pool query'))], [{ n: i }]);
  const reserved = await within(sql.reserve(), 5000, 'a new reservation');
  reserved.release();
});

test('server: an inbox read, an admin write and the retention job lose their backend while waiting on a lock: 503 + Retry-After, no process dies, the next request works', async (t) => {
  const name = 'server_faults';
  const url = await pg.createDatabase(name);
  const admin = pg.connect(name);
  pools.push(admin);
  // Retention every 300 ms, so its reserved connection is caught waiting too.
  const server = await TestServer.start({
    databaseUrl: url,
    workers: 2,
    env: { RETENTION_INTERVAL_MS: '300', LOG_LEVEL: 'info' },
  });
  t.after(() => server.killAll());
  const { key, orgId } = await createOrgWithKey(server.url, { name: 'faults' });
  const sent = await call(server.url, 'POST', '/v1/events', { key, body: { type: 'before', payload: {} } });
  assert.equal(sent.status, 202, sent.text);
  const primary = server.proc.pid!;
  const pidsBefore = workersOf(primary)
    .map((w) => w.pid)
    .sort();
  assert.equal(pidsBefore.length, 3, `2 HTTP workers and a delivery worker: ${JSON.stringify(workersOf(primary))}`);

  const expectUnavailable = (response: Awaited<ReturnType<typeof boundedCall>>, what: string) =>
    assert.ok(
      isUnavailable(response),
      `${what}: ${response.status} ${response.headers.get('retry-after')} ${response.text}`,
    );

  // 1. The inbox read (a transaction) waits on the events table.
  {
    const lock = await holdLock(admin, 'lock table events in access exclusive mode');
    try {
      const read = boundedCall(server.url, 'GET', '/v1/inbox', { key });
      await terminateLockWaiter(admin, name, 'triggers-http');
      expectUnavailable(await read, 'inbox read');
    } finally {
      lock.release();
      await lock.done;
    }
  }
  // 2. An admin write (a transaction) waits on the org's row.
  {
    const lock = await holdLock(admin, `select * from orgs where id = '${orgId}' for update`);
    try {
      const write = boundedCall(server.url, 'PATCH', `/v1/admin/orgs/${orgId}`, {
        admin: true,
        body: { name: 'renamed' },
      });
      await terminateLockWaiter(admin, name, 'triggers-http');
      expectUnavailable(await write, 'admin write');
    } finally {
      lock.release();
      await lock.done;
    }
  }
  // 3. The retention job (the primary: the whole node) on its reserved connection waits on
  // event_dedup; then one more statement (the advisory unlock) and release() on the dead connection.
  {
    const lock = await holdLock(admin, 'lock table event_dedup in access exclusive mode');
    try {
      await terminateLockWaiter(admin, name, 'triggers-primary');
    } finally {
      lock.release();
      await lock.done;
    }
  }
  await sleep(1000); // where a crash would land: the setImmediate, the next retention runs

  assert.equal(server.proc.exitCode, null, `the primary died:\n${server.output.slice(-3000)}`);
  assert.equal(server.proc.signalCode, null);
  assert.deepEqual(
    workersOf(primary)
      .map((w) => w.pid)
      .sort(),
    pidsBefore,
    `a worker was replaced:\n${server.output.slice(-3000)}`,
  );
  assert.doesNotMatch(server.output, /worker died/);
  assert.doesNotMatch(server.output, /TypeError|unhandled|uncaught/i);

  // The next requests work, on both workers (fresh connections spread over them).
  const inbox = await Promise.all(
    Array.from({ length: 6 }, () =>
      boundedCall(server.url, 'GET', '/v1/inbox', { key, headers: { connection: 'close' } }),
    ),
  );
  for (const response of inbox) assert.equal(response.status, 200, response.text);
  const renamed = await boundedCall(server.url, 'PATCH', `/v1/admin/orgs/${orgId}`, {
    admin: true,
    body: { name: 'renamed' },
  });
  assert.equal(renamed.status, 200, renamed.text);
  // The primary's pool still serves retention: an expired dedup claim is deleted by a later run.
  await admin`insert into event_dedup (org_id, dedup_id, event_id, received_at) values (${orgId}, 'expired', gen_random_uuid(), now() - interval '30 days')`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    const [row] = await admin`select count(*)::int as n from event_dedup where dedup_id = 'expired'`;
    if (row!.n === 0) break;
    assert.ok(
      Date.now() < deadline,
      `retention stopped running after its connection was lost:\n${server.output.slice(-3000)}`,
    );
    await sleep(100);
  }
});
