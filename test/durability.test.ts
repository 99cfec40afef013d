import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Sql } from '../src/db/connect.js';
import { createOrgWithKey } from './helpers/api.js';
import { ingestUntil, sleep } from './helpers/load.js';
import { TestPostgres } from './helpers/postgres.js';
import { TestServer } from './helpers/server.js';

let pg: TestPostgres;
let db: Sql;
let databaseUrl: string;
const servers: TestServer[] = [];

before(async () => {
  pg = await TestPostgres.start();
  databaseUrl = await pg.createDatabase('durability');
  db = pg.connect('durability');
});

after(async () => {
  for (const server of servers) await server.killAll();
  await db?.end({ timeout: 1 });
  await pg?.stop();
});

async function missingIds(ids: string[]): Promise<string[]> {
  const found = new Set<string>();
  for (let i = 0; i < ids.length; i += 5000) {
    const rows = await db`select id from events where id = any(${ids.slice(i, i + 5000)}::uuid[])`;
    for (const row of rows) found.add(row.id);
  }
  return ids.filter((id) => !found.has(id));
}

test('SIGKILL of the whole server under load loses no event that got a 202', async () => {
  const first = await TestServer.start({ databaseUrl, workers: 2 });
  servers.push(first);
  const { key } = await createOrgWithKey(first.url);

  const load = ingestUntil(
    first.url,
    key,
    32,
    (async () => {
      await sleep(2500);
      await first.killAll(); // primary and both workers, mid-flush, no drain
      await sleep(300);
    })(),
  );
  const { accepted, statuses } = await load;
  assert.ok(accepted.length > 100, `too little load to prove anything: ${JSON.stringify([...statuses])}`);

  const second = await TestServer.start({ databaseUrl, workers: 2 });
  servers.push(second);
  assert.deepEqual(await missingIds(accepted), [], 'events answered 202 are missing after the crash');
  await second.stop();
});

test('SIGTERM under load drains: exit 0, every 202 stored, nothing half-answered', async () => {
  const server = await TestServer.start({ databaseUrl, workers: 2 });
  servers.push(server);
  const { key } = await createOrgWithKey(server.url);
  let exitCode: number | null = -1;
  let exitMs = 0;
  const { accepted, statuses } = await ingestUntil(
    server.url,
    key,
    32,
    (async () => {
      await sleep(2000);
      const signalled = Date.now();
      exitCode = await server.stop('SIGTERM');
      exitMs = Date.now() - signalled;
    })(),
  );
  assert.equal(exitCode, 0, server.output);
  // The contract's own bound (API.md §8): exit within 10 s of SIGTERM.
  assert.ok(exitMs < 10_000, `exit took ${exitMs} ms after SIGTERM`);
  assert.ok(accepted.length > 100);
  for (const status of statuses.keys()) {
    assert.ok(
      [202, 503, 'ECONNREFUSED', 'ECONNRESET', 'EPIPE'].includes(status as never),
      `unexpected outcome ${status}`,
    );
  }
  assert.deepEqual(await missingIds(accepted), []);
});
