import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import type { Sql } from '../src/db/connect.js';
import { call, createOrgWithKey, sendEvent } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { ADMIN_TOKEN, freePort } from './helpers/server.js';

/**
 * Production as docs/PM2.md describes it: the project's own pm2 runs ecosystem.config.cjs. A
 * private PM2_HOME keeps this away from any pm2 the user runs; the daemon is killed at the end.
 */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PM2 = path.join(ROOT, 'node_modules/.bin/pm2');
const APP = `triggers-pm2-test-${process.pid}`;

let pg: TestPostgres;
let db: Sql;
let pm2Home: string;
let port: number;
let base: string;
let pm2Env: NodeJS.ProcessEnv;

function pm2(...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(PM2, args, { cwd: ROOT, env: pm2Env, timeout: 120_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`pm2 ${args.join(' ')} failed: ${error.message}\n${stdout}\n${stderr}`));
      else resolve(stdout + stderr);
    });
  });
}

async function describeApp(): Promise<{ status: string; exitCode: number | undefined; restarts: number; pid: number }> {
  const list = JSON.parse(await pm2('jlist')) as Array<{
    name: string;
    pid: number;
    pm2_env: { status: string; exit_code?: number; restart_time: number };
  }>;
  const app = list.find((entry) => entry.name === APP);
  assert.ok(app, `pm2 does not know ${APP}`);
  return {
    status: app.pm2_env.status,
    exitCode: app.pm2_env.exit_code,
    restarts: app.pm2_env.restart_time,
    pid: app.pid,
  };
}

async function waitFor(what: string, condition: () => Promise<boolean> | boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await condition()) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

before(async () => {
  pg = await TestPostgres.start();
  const databaseUrl = await pg.createDatabase('pm2');
  db = pg.connect('pm2');
  pm2Home = fs.mkdtempSync(path.join(os.tmpdir(), 'triggers-pm2-'));
  port = await freePort();
  base = `http://127.0.0.1:${port}`;
  pm2Env = {
    ...process.env,
    PM2_HOME: pm2Home,
    PM2_APP_NAME: APP,
    PORT: String(port),
    HOST: '127.0.0.1',
    WORKERS: '2',
    DATABASE_URL: databaseUrl,
    ADMIN_TOKEN,
  };
  delete pm2Env.DATA_DIR;
  delete pm2Env.LOG_LEVEL;
});

after(async () => {
  if (pm2Home) {
    await pm2('delete', APP).catch(() => {});
    await pm2('kill').catch(() => {});
    fs.rmSync(pm2Home, { recursive: true, force: true });
  }
  await db?.end({ timeout: 1 });
  await pg?.stop();
});

test('pm2 start, reload and stop lose no accepted event and exit cleanly', async (t) => {
  assert.ok(fs.existsSync(path.join(ROOT, 'dist/src/main.js')), 'build first (npm run build)');
  await pm2('start', 'ecosystem.config.cjs');
  await waitFor('the server under pm2 to answer', async () => (await call(base, 'GET', '/status')).status === 200);
  const { key } = await createOrgWithKey(base);
  const firstPid = (await describeApp()).pid;

  // Continuous traffic from several senders. Refused connections and 503s while the server
  // restarts are expected; what matters is that every 202 is in Postgres afterwards.
  const accepted: string[] = [];
  const refused = { connection: 0, unavailable: 0, other: 0 };
  let running = true;
  const sender = async (lane: number) => {
    for (let i = 0; running; i++) {
      try {
        const response = await sendEvent(base, key, { type: 'pm2.test', payload: { lane, i } });
        if (response.status === 202) accepted.push(response.body.id);
        else if (response.status === 503) refused.unavailable++;
        else refused.other++;
      } catch {
        refused.connection++;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  };
  const senders = Array.from({ length: 4 }, (_, lane) => sender(lane));

  try {
    await waitFor('traffic before the reload', () => accepted.length >= 100);
    await pm2('reload', APP);
    const afterReload = accepted.length;
    await waitFor('traffic after the reload', () => accepted.length >= afterReload + 100);
    const reloaded = await describeApp();
    assert.equal(reloaded.status, 'online');
    assert.notEqual(reloaded.pid, firstPid, 'reload started a new primary');
    assert.equal(reloaded.exitCode, 0, 'the old primary exited 0 on reload');

    await pm2('stop', APP);
  } finally {
    running = false;
    await Promise.all(senders);
  }

  const stopped = await describeApp();
  assert.equal(stopped.status, 'stopped');
  assert.equal(stopped.exitCode, 0, 'pm2 saw exit code 0 on stop');
  const daemonLog = fs.readFileSync(path.join(pm2Home, 'pm2.log'), 'utf8');
  const exits = [...daemonLog.matchAll(new RegExp(`App \\[${APP}:\\d+\\] exited with code \\[(\\d+)\\]`, 'g'))].map(
    (match) => match[1],
  );
  assert.deepEqual(exits, ['0', '0'], `one clean exit for the reload and one for the stop:\n${daemonLog}`);
  assert.equal(refused.other, 0, 'no answer other than 202, 503 or a refused connection');

  // Every accepted event is durable: each 202 id is in Postgres.
  const ids = [...new Set(accepted)];
  assert.equal(ids.length, accepted.length);
  const found = await db`select count(*)::int as n from events where id = any(${ids}::uuid[])`;
  assert.equal(
    found[0]!.n,
    ids.length,
    `all ${ids.length} accepted events are stored (refused: ${JSON.stringify(refused)})`,
  );

  t.diagnostic(`accepted ${ids.length}; refused while restarting: ${JSON.stringify(refused)}`);

  const appLog = (suffix: string) =>
    fs
      .readdirSync(path.join(pm2Home, 'logs'))
      .filter((name) => name.endsWith(suffix))
      .map((name) => fs.readFileSync(path.join(pm2Home, 'logs', name), 'utf8'))
      .join('');
  const outLog = appLog('-out.log') + appLog('-error.log');
  assert.equal(outLog.match(/Triggers API serving on/g)?.length, 2, 'the banner once per start (start and reload)');
  // A drain is not a crash: the primary must not "replace" workers it is stopping.
  assert.doesNotMatch(outLog, /worker died|"level":(50|60)/, `no error lines during reload and stop:\n${outLog}`);
});
