import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { call, sendEvent } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { TestServer } from './helpers/server.js';

const run = promisify(execFile);
const ADMIN_CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../scripts/admin.js');
const KEY_RE = /zt_live_[a-z0-9]{12}_[A-Za-z0-9_-]{43}/;

let dataDir: string;
let server: TestServer | null = null;

before(() => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'triggers-data-'));
  fs.chmodSync(dataDir, 0o755);
});

after(async () => {
  await server?.stop();
  // Stop the embedded Postgres if a failed test left it running, then remove the data.
  const pidFile = path.join(dataDir, 'pg', 'postmaster.pid');
  if (fs.existsSync(pidFile)) {
    try {
      process.kill(Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0]), 'SIGINT');
    } catch {
      /* gone */
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  fs.rmSync(dataDir, { recursive: true, force: true });
});

async function admin(args: string[], env: Record<string, string> = {}) {
  const { stdout } = await run(process.execPath, [ADMIN_CLI, ...args], {
    env: { ...process.env, DATA_DIR: dataDir, ...env, ...(env.DATABASE_URL ? {} : { DATABASE_URL: '' }) },
  });
  return JSON.parse(stdout);
}

test('first start with no configuration: embedded Postgres, a printed key and curl line; a restart reuses it', async () => {
  server = await TestServer.start({ dataDir, workers: 1 });
  const printed = server.output.match(KEY_RE);
  assert.ok(printed, `no key printed:\n${server.output}`);
  assert.match(server.output, /curl -X POST http:\/\/127\.0\.0\.1:\d+\/v1\/events -H "Authorization: Bearer zt_live_/);
  assert.match(server.output, /open http:\/\/127\.0\.0\.1:\d+\/console and sign in with the key/);
  const key = printed[0];

  const sent = await sendEvent(server.url, key, { type: 'user.signup', payload: { id: 1 } });
  assert.equal(sent.status, 202);
  // The printed console URL serves the built console, and the key signs in to it (GET /v1/key).
  const consolePage = await fetch(`${server.url}/console`);
  assert.equal(consolePage.status, 200);
  assert.match(await consolePage.text(), /<script type="module"[^>]* src="\/console\/assets\//);
  const me = await call(server.url, 'GET', '/v1/key', { key });
  assert.deepEqual([me.status, me.body.org.name], [200, 'default']);
  assert.equal(await server.stop(), 0);
  server = null;
  assert.ok(!fs.existsSync(path.join(dataDir, 'pg', 'postmaster.pid')), 'embedded Postgres still running after stop');

  server = await TestServer.start({ dataDir, workers: 1 });
  assert.doesNotMatch(server.output, KEY_RE, 'a second start printed a new key');
  const got = await call(server.url, 'GET', `/v1/events/${sent.body.id}`, { key });
  assert.equal(got.status, 200);
  assert.equal(got.body.type, 'user.signup');
});

test('admin CLI works against the running embedded database: org, key, list, revoke', async () => {
  assert.ok(server, 'needs the server from the previous test');
  const org = await admin(['orgs', 'create', '--name', 'cli org', '--rate', '500']);
  assert.equal(org.name, 'cli org');
  assert.equal(org.rate_limit_per_sec, 500);
  const created = await admin(['keys', 'create', org.id, '--scopes', 'events:write,events:read', '--name', 'ci']);
  assert.match(created.key, KEY_RE);
  assert.equal((await sendEvent(server.url, created.key, { type: 'cli.made', payload: {} })).status, 202);

  const listed = await admin(['keys', 'list', org.id]);
  assert.equal(listed.length, 1);
  assert.equal(listed[0].key, undefined);

  await admin(['keys', 'revoke', created.id]);
  let status = 0;
  for (let i = 0; i < 40 && status !== 401; i++) {
    status = (await sendEvent(server.url, created.key, { type: 'cli.made', payload: {} })).status;
    if (status !== 401) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.equal(status, 401, 'a key revoked by the CLI still works');
  // The CLI did not stop the server's database.
  assert.equal((await call(server.url, 'GET', '/status')).body.checks.postgres, 'ok');
});

test('admin CLI against DATABASE_URL, and a clear error for bad input', async () => {
  const pg = await TestPostgres.shared();
  try {
    const url = await pg.createDatabase('cli');
    const org = await admin(['orgs', 'create', '--name', 'remote'], { DATABASE_URL: url });
    const fetched = await admin(['orgs', 'get', org.id], { DATABASE_URL: url });
    assert.equal(fetched.name, 'remote');
    await assert.rejects(
      admin(['orgs', 'create', '--name', 'x', '--rate', '0'], { DATABASE_URL: url }),
      /rate_limit_per_sec/,
    );
  } finally {
    await pg.stop();
  }
});
