import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { call, createOrgWithKey, sendEvent } from './helpers/api.js';
import { deadlineAfter, ingestUntil, sleep } from './helpers/load.js';
import { launchServer } from './helpers/processes.js';
import { ADMIN_TOKEN, freePort, TestServer } from './helpers/server.js';

/**
 * Issue 29 parts 1, 3 and 4, with the embedded Postgres: a start that cannot listen stops the
 * Postgres it started; no Postgres outlives its server (SIGKILL included); one left over is
 * handled by the next start; a second server on the same DATA_DIR is refused; a postmaster
 * killed under the server comes back.
 */

let dataDir: string;
let server: TestServer | null = null;

before(() => {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'triggers-supervised-'));
  fs.chmodSync(dataDir, 0o755);
});

after(async () => {
  await server?.killAll();
  const pid = postmasterPid();
  if (pid) {
    process.kill(pid, 'SIGINT');
    for (let i = 0; i < 200 && postmasterPid(); i++) await sleep(50);
  }
  fs.rmSync(dataDir, { recursive: true, force: true });
});

/** The running postmaster of dataDir's cluster, or null. */
function postmasterPid(dir = dataDir): number | null {
  try {
    const pid = Number(fs.readFileSync(path.join(dir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0]);
    process.kill(pid, 0);
    return pid;
  } catch {
    return null;
  }
}

async function until<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | null | undefined | false> | T | null | undefined | false,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await Promise.resolve()
      .then(probe)
      .catch(() => null);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** Children of `pid` whose command line contains `needle` (the watchdog's name). */
function childrenMatching(pid: number, needle: string): number[] {
  const found: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) !== pid) continue;
      if (fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(needle)) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

async function start(env: Record<string, string> = {}): Promise<TestServer> {
  server = await TestServer.start({ dataDir, workers: 2, env: { LOG_LEVEL: 'info', ...env } });
  return server;
}

function launch(env: Record<string, string>) {
  return launchServer({
    HOST: '127.0.0.1',
    WORKERS: '1',
    ADMIN_TOKEN,
    LOG_LEVEL: 'info',
    DATABASE_URL: '',
    DATA_DIR: dataDir,
    ...env,
  });
}

test('a port taken while the embedded Postgres boots: the workers cannot listen; Postgres is stopped, exit 1, one message', async () => {
  const port = await freePort();
  const run = launch({ PORT: String(port) });
  let holder: net.Server | null = null;
  try {
    // The primary found the port free; now (Postgres initialising) another program takes it.
    await until(
      'Postgres starting',
      60_000,
      () => /initialising an embedded Postgres/.test(run.stdout) || run.proc.exitCode !== null,
    );
    holder = await new Promise<net.Server>((resolve, reject) => {
      const listener = net.createServer();
      listener.once('error', reject);
      listener.listen(port, '127.0.0.1', () => resolve(listener));
    });
    const code = await Promise.race([run.exited, deadlineAfter(90_000, 'still running')]);
    assert.equal(code, 1, `${run.stdout}\n${run.stderr}`);
    const lines = run.stderr.trim().split('\n');
    assert.equal(lines.length, 1, run.stderr);
    assert.match(
      lines[0]!,
      new RegExp(
        `^Triggers API failed to start: cannot listen on 127\\.0\\.0\\.1:${port}: the port is already in use.*PORT=`,
      ),
    );
    assert.equal(postmasterPid(), null, 'the embedded Postgres is still running');
    assert.ok(!fs.existsSync(path.join(dataDir, 'server.lock')), 'DATA_DIR is still locked');
  } finally {
    holder?.close();
    try {
      process.kill(-run.proc.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
});

test('a second start on the same DATA_DIR is refused naming the first (pid, port) and changes nothing; the first keeps serving', async () => {
  const first = await start();
  const lock = fs.readFileSync(path.join(dataDir, 'server.lock'), 'utf8');
  const postgres = postmasterPid();
  assert.ok(postgres);

  const second = launch({ PORT: String(await freePort()) });
  const code = await Promise.race([second.exited, deadlineAfter(60_000, 'still running')]);
  assert.equal(code, 1, `${second.stdout}\n${second.stderr}`);
  assert.equal(second.stderr.trim().split('\n').length, 1, second.stderr);
  assert.match(
    second.stderr,
    new RegExp(
      `in use by the Triggers API server with pid ${first.proc.pid}, serving on http://127\\.0\\.0\\.1:${first.port}`,
    ),
  );

  assert.equal(fs.readFileSync(path.join(dataDir, 'server.lock'), 'utf8'), lock);
  assert.equal(postmasterPid(), postgres, 'the Postgres of the first server was touched');
  await sleep(1000);
  const status = await call(first.url, 'GET', '/status');
  assert.equal(status.status, 200, status.text);
  assert.equal(status.body.checks.postgres, 'ok');
  const { key } = await createOrgWithKey(first.url);
  assert.equal((await sendEvent(first.url, key, { type: 'still.served', payload: {} })).status, 202);
});

test('kill -9 of the embedded postmaster: /status degraded meanwhile, it comes back, events flow again', async () => {
  assert.ok(server, 'needs the server of the previous test');
  const { key } = await createOrgWithKey(server.url);
  const before = postmasterPid()!;
  process.kill(before, 'SIGKILL');
  const degraded = await until('/status degraded', 20_000, async () => {
    const status = await call(server!.url, 'GET', '/status');
    return status.status === 503 ? status : null;
  });
  assert.equal(degraded.body.checks.postgres, 'down');

  const after = await until('a new postmaster', 60_000, () => {
    const pid = postmasterPid();
    return pid !== null && pid !== before ? pid : null;
  });
  assert.notEqual(after, before);
  await until(
    '202 again',
    60_000,
    async () => (await sendEvent(server!.url, key, { type: 'after.restart', payload: {} })).status === 202,
  );
  await until('/status ok', 30_000, async () => (await call(server!.url, 'GET', '/status')).status === 200);
  assert.match(server.output, /the embedded Postgres \(pid \d+\) exited \(killed by SIGKILL\); starting it again/);
  const metrics = await call(server.url, 'GET', '/metrics');
  assert.match(metrics.text, /worker_restarts_total\{role="postgres"\} [1-9]/);
});

test('SIGKILL of the primary: its Postgres stops within seconds; the next start serves every event answered 202', async () => {
  assert.ok(server, 'needs the server of the previous test');
  const killed = server;
  const { key } = await createOrgWithKey(killed.url);
  const { accepted } = await ingestUntil(
    killed.url,
    key,
    8,
    (async () => {
      await sleep(1500);
      await killed.stop('SIGKILL'); // the primary only: its workers drain by themselves, Postgres is the watchdog's
    })(),
  );
  server = null;
  assert.ok(accepted.length > 10, `too little load: ${accepted.length}`);
  await until('the embedded Postgres stopped', 20_000, () => postmasterPid() === null);
  assert.match(
    fs.readFileSync(path.join(dataDir, 'postgres.log'), 'utf8'),
    /triggers watchdog: the server that started Postgres \(pid \d+\) is gone; stopping it/,
  );

  const restarted = await start();
  assert.doesNotMatch(restarted.output, /left running/);
  const missing: string[] = [];
  for (const id of accepted) {
    const got = await call(restarted.url, 'GET', `/v1/events/${id}`, { key });
    if (got.status !== 200) missing.push(`${id}: ${got.status}`);
  }
  assert.deepEqual(missing, [], 'events answered 202 are missing after the kill');
});

test('a Postgres left over (server and watchdog both killed): the next start stops it and serves on its own', async () => {
  assert.ok(server, 'needs the server of the previous test');
  const { key } = await createOrgWithKey(server.url);
  const sent = await sendEvent(server.url, key, { type: 'before.crash', payload: {} });
  assert.equal(sent.status, 202);
  const primary = server.proc.pid!;
  const watchdogs = childrenMatching(primary, 'triggers-pg-watchdog');
  assert.equal(watchdogs.length, 1, 'no watchdog beside the primary');
  for (const pid of watchdogs) process.kill(pid, 'SIGKILL');
  const leftover = postmasterPid();
  await server.killAll();
  server = null;
  await sleep(1000);
  assert.equal(postmasterPid(), leftover, 'without its watchdog, Postgres should have outlived the server');

  const next = await start();
  assert.match(
    next.output,
    new RegExp(`stopping the embedded Postgres left running on .* by a process that is gone \\(pid ${leftover}\\)`),
  );
  assert.notEqual(postmasterPid(), leftover);
  const got = await call(next.url, 'GET', `/v1/events/${sent.body.id}`, { key });
  assert.equal(got.status, 200, got.text);
  assert.equal(await next.stop(), 0);
  server = null;
  assert.equal(postmasterPid(), null, 'embedded Postgres still running after stop');
  assert.ok(!fs.existsSync(path.join(dataDir, 'server.lock')), 'the lock outlived a clean stop');
});
