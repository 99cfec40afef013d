import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import postgres from 'postgres';
import { call, createOrgWithKey, sendEvent } from './helpers/api.js';
import { TestServer } from './helpers/server.js';
import { hasPostgres15, SystemPostgres } from './helpers/system-postgres.js';

const missing = !hasPostgres15();
if (missing && process.env.CI === 'true')
  throw new Error('PostgreSQL 15 binaries are required in CI (apt-get install postgresql-15)');
const skip = missing ? 'PostgreSQL 15 server binaries not installed (apt-get install postgresql-15)' : false;

let pg: SystemPostgres;
let server: TestServer | null = null;

before(async () => {
  if (skip) return;
  pg = await SystemPostgres.start();
});

after(async () => {
  await server?.stop();
  await pg?.stop();
});

test('DATABASE_URL: runs against an external PostgreSQL 15 over TCP, with no embedded one', { skip }, async () => {
  server = await TestServer.start({ databaseUrl: pg.url, workers: 2 });
  assert.match(server.output, /database: DATABASE_URL/);
  assert.doesNotMatch(server.output, /embedded/);
  const { key } = await createOrgWithKey(server.url);
  const single = await sendEvent(server.url, key, { type: 'pg15.single', payload: { ok: true }, dedup_id: 'pg15-1' });
  assert.equal(single.status, 202);
  assert.equal(
    (await sendEvent(server.url, key, { type: 'pg15.single', payload: {}, dedup_id: 'pg15-1' })).body.id,
    single.body.id,
  );
  const batch = await call(server.url, 'POST', '/v1/events/batch', {
    key,
    body: { events: Array.from({ length: 100 }, (_, i) => ({ type: 'pg15.batch', payload: { i } })) },
  });
  assert.equal(batch.body.accepted, 100);
  assert.equal((await call(server.url, 'GET', `/v1/events/${single.body.id}`, { key })).body.type, 'pg15.single');

  const sql = postgres(pg.url, { max: 1, onnotice: () => {} });
  try {
    const [row] =
      await sql`select count(*)::int as n, current_setting('server_version_num')::int as version from events`;
    assert.equal(row!.n, 101);
    assert.ok(row!.version >= 150000 && row!.version < 160000);
  } finally {
    await sql.end({ timeout: 1 });
  }
});
