import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import type { Sql } from '../src/db/connect.js';
import { call, createOrgWithKey } from './helpers/api.js';
import { childPids, commandLineOf, ingestUntil, sleep } from './helpers/load.js';
import { TestPostgres } from './helpers/postgres.js';
import { TestServer } from './helpers/server.js';

let pg: TestPostgres;
let db: Sql;
let databaseUrl: string;
let server: TestServer | null = null;

before(async () => {
  pg = await TestPostgres.start();
  databaseUrl = await pg.createDatabase('cluster');
  db = pg.connect('cluster');
});

after(async () => {
  await server?.killAll();
  await db?.end({ timeout: 1 });
  await pg?.stop();
});

const httpWorkers = (primary: number) => childPids(primary).filter((pid) => commandLineOf(pid).includes('main.js'));

test('a SIGKILLed worker is replaced while the others keep serving; nothing 202 is lost', async () => {
  server = await TestServer.start({ databaseUrl, workers: 2 });
  const { key } = await createOrgWithKey(server.url);
  const primary = server.proc.pid!;
  const before = httpWorkers(primary);
  assert.ok(before.length >= 2, `expected 2 workers, saw ${before}`);

  const victim = before[0]!;
  const { accepted, statuses } = await ingestUntil(
    server.url,
    key,
    16,
    (async () => {
      await sleep(1000);
      process.kill(victim, 'SIGKILL');
      await sleep(2500);
    })(),
  );
  // Requests kept succeeding after the kill (the survivor served them).
  assert.ok((statuses.get(202) ?? 0) > 100, JSON.stringify([...statuses]));

  let now: number[] = [];
  for (let i = 0; i < 100; i++) {
    now = httpWorkers(primary);
    if (now.length === before.length && !now.includes(victim)) break;
    await sleep(100);
  }
  assert.equal(now.length, before.length, 'the dead worker was not replaced');
  assert.ok(!now.includes(victim));
  assert.match(server.output, /worker died; starting a replacement/);

  const rows = await db`select count(*)::int as n from events where id = any(${accepted}::uuid[])`;
  assert.equal(rows[0]!.n, accepted.length);
  // The replacement serves too: fresh connections spread over both workers.
  const fresh = await Promise.all(
    Array.from({ length: 20 }, () =>
      call(server!.url, 'POST', '/v1/events', {
        key,
        body: { type: 'after', payload: {} },
        headers: { connection: 'close' },
      }),
    ),
  );
  assert.ok(fresh.every((r) => r.status === 202));
  assert.equal(await server.stop('SIGTERM'), 0);
  server = null;
});

test('refuses to start when the uWebSockets.js native binary is not in use', () => {
  const main = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src/main.js');
  const result = spawnSync(process.execPath, [main], {
    env: { ...process.env, UWS_USE_FALLBACK: '1', DATABASE_URL: databaseUrl, PORT: '0', LOG_LEVEL: 'fatal' },
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.notEqual(result.status, 0);
  assert.match(result.stderr, /native binary did not load/);
});

test('a bad configuration value stops the start with a message naming it', () => {
  const main = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src/main.js');
  const result = spawnSync(process.execPath, [main], {
    env: { ...process.env, WORKERS: 'many' },
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(result.status, 1);
  assert.match(result.stderr, /WORKERS must be an integer/);
});
