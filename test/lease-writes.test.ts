import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { call, createOrgWithKey } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { TestServer } from './helpers/server.js';
import { waitFor } from './webhooks-receiver.js';

/**
 * What creating endpoints one by one costs in lease writes (src/delivery/leases.ts). Every
 * endpoint change makes the delivery process sync its leases; a sync that renewed every held
 * lease wrote O(n) rows per change, O(n²) for n endpoints created one by one (1 000 endpoints:
 * ~90 000 lease rows, 9-46 s of Postgres work). A trigger counts the rows written.
 */

const ENDPOINTS = 300;
let pg: TestPostgres;
let server: TestServer;

before(async () => {
  pg = await TestPostgres.start();
  const databaseUrl = await pg.createDatabase('lease_writes');
  server = await TestServer.start({
    databaseUrl,
    workers: 1,
    env: {
      WEBHOOK_ALLOW_HTTP: 'true',
      WEBHOOK_ALLOW_PRIVATE: 'true',
      WEBHOOK_MAX_ENDPOINTS_PER_ORG: String(ENDPOINTS),
    },
  });
});

after(async () => {
  await server?.stop();
  await pg?.stop();
});

test(`creating ${ENDPOINTS} endpoints one by one writes lease rows in proportion to the endpoints, not their square`, {
  timeout: 120_000,
}, async () => {
  const db = pg.connect('lease_writes');
  try {
    await db.unsafe(`
      create table lease_writes (n bigint not null);
      insert into lease_writes values (0);
      create function count_lease_write() returns trigger language plpgsql as $$
        begin update lease_writes set n = n + 1; return null; end $$;
      create trigger count_lease_writes after insert or update on delivery_leases for each row execute function count_lease_write();`);
    const { key } = await createOrgWithKey(server.url);
    for (let i = 0; i < ENDPOINTS; i++) {
      const response = await call(server.url, 'POST', '/v1/webhooks', {
        key,
        body: { url: `http://127.0.0.1:9/hook-${i}` },
      });
      assert.equal(response.status, 201, response.text);
    }
    await waitFor(
      `all ${ENDPOINTS} endpoints leased`,
      async () => {
        const [row] = await db`select count(*)::int as n from delivery_leases where expires_at > now()`;
        return row!.n === ENDPOINTS;
      },
      60_000,
      100,
    );
    const [{ n }] = (await db`select n::int as n from lease_writes`) as unknown as [{ n: number }];
    // One insert per endpoint, plus a renewal of every held lease about once a second while the
    // endpoints were created (a few seconds here, more on a loaded machine). Before the fix: a
    // renewal of all per endpoint created, ~ENDPOINTS² / 2 = 45 000.
    assert.ok(n < ENDPOINTS * 25, `${n} lease rows written for ${ENDPOINTS} endpoints`);
    console.log(`# ${n} lease rows written for ${ENDPOINTS} endpoints created one by one`);
  } finally {
    await db.end({ timeout: 1 });
  }
});
