/**
 * What hanging endpoints cost the server, with nothing else running: one org, ENDPOINTS (default
 * 1 000) endpoints whose receiver never answers, EVENTS (default 20) events each, and
 * WEBHOOK_TIMEOUT_MS 2 000. After a 5 s settle it watches WINDOW_S (default 20) seconds and
 * prints the timeouts a second (requests the receiver got), the CPU of each server process and of
 * Postgres, the row writes by table and the statements by kind (Postgres's log_statement for the
 * window). The noisy-neighbour scenario of bench:webhooks measures what this costs another org;
 * this says where the cost comes from.
 *
 *   npm run bench:hanging
 *   ENDPOINTS=200 WINDOW_S=10 npm run bench:hanging
 *
 * Baseline for the ratios: the same server with the same endpoints and no events (its streams
 * idle), measured first in the same run: the cost of holding the endpoints at all.
 */
import fs from 'node:fs';
import path from 'node:path';
import { call, createOrgWithKey } from '../test/helpers/api.js';
import { TestPostgres } from '../test/helpers/postgres.js';
import { workerPids } from '../test/helpers/processes.js';
import { TestServer } from '../test/helpers/server.js';
import { Receiver } from '../test/webhooks-receiver.js';
import { cpuSeconds, descendantsOf, postmasterPid } from './proc-stats.js';

const ENDPOINTS = Number(process.env.ENDPOINTS || 1_000);
const EVENTS = Number(process.env.EVENTS || 20);
const WINDOW_S = Number(process.env.WINDOW_S || 20);
const SETTLE_MS = 5_000;
const SETUP_CONCURRENCY = 16;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Window {
  seconds: number;
  requests: number;
  cpu: Record<string, number>;
  writes: Map<string, number>;
  statements: Map<string, number>;
}

async function main(): Promise<void> {
  const pg = await TestPostgres.start();
  const databaseUrl = await pg.createDatabase('hanging');
  const db = pg.connect('hanging');
  const server = await TestServer.start({
    databaseUrl,
    workers: 2,
    env: {
      WEBHOOK_ALLOW_HTTP: 'true',
      WEBHOOK_ALLOW_PRIVATE: 'true',
      WEBHOOK_TIMEOUT_MS: '2000',
      WEBHOOK_MAX_ENDPOINTS_PER_ORG: String(ENDPOINTS),
    },
  });
  const receiver = await Receiver.start(() => ({ status: 200, hang: true }));
  try {
    const org = await createOrgWithKey(server.url, {
      name: 'hanging',
      rate_limit_per_sec: 1_000_000,
      burst: 1_000_000,
    });
    let next = 0;
    await Promise.all(
      Array.from({ length: SETUP_CONCURRENCY }, async () => {
        while (next < ENDPOINTS) {
          const i = next++;
          const created = await call(server.url, 'POST', '/v1/webhooks', {
            key: org.key,
            body: { url: `${receiver.url}?n=${i}` },
          });
          if (created.status !== 201) throw new Error(`endpoint ${i}: ${created.status} ${created.text}`);
        }
      }),
    );
    console.log(`${ENDPOINTS} endpoints created; watching ${WINDOW_S} s with no events (the baseline)`);
    await sleep(SETTLE_MS);
    const idle = await watch(server, pg, db, receiver);
    print('no events (the baseline)', idle, null);

    const events = Array.from({ length: EVENTS }, (_, i) => ({ type: 'hanging.event', payload: { i } }));
    const sent = await call(server.url, 'POST', '/v1/events/batch', { key: org.key, body: { events } });
    if (sent.status !== 200) throw new Error(`batch: ${sent.status} ${sent.text}`);
    console.log(`\n${EVENTS} events for each endpoint; watching ${WINDOW_S} s after a ${SETTLE_MS / 1000} s settle`);
    await sleep(SETTLE_MS);
    const hanging = await watch(server, pg, db, receiver);
    print('hanging', hanging, idle);
  } finally {
    await receiver.close();
    await server.stop();
    await db.end({ timeout: 1 });
    await pg.stop();
  }
}

function processCpu(server: TestServer, pgDir: string): Record<string, number> {
  const cpu: Record<string, number> = {};
  const http = workerPids(server.proc.pid!, 'http');
  const delivery = workerPids(server.proc.pid!, 'delivery');
  cpu.http = http.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  cpu.delivery = delivery.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  cpu.primary = cpuSeconds(server.proc.pid!);
  const postmaster = postmasterPid(pgDir);
  cpu.postgres =
    postmaster === null ? 0 : [postmaster, ...descendantsOf(postmaster)].reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  return cpu;
}

async function tableWrites(db: ReturnType<TestPostgres['connect']>): Promise<Map<string, number>> {
  const rows = await db`select relname, (n_tup_ins + n_tup_upd + n_tup_del)::float8 as writes from pg_stat_user_tables`;
  return new Map(rows.map((row) => [row.relname as string, row.writes as number]));
}

/** The statements Postgres logged over the window, by their first 110 characters. */
function statementsLogged(pgDir: string, fromBytes: Map<string, number>): Map<string, number> {
  const kinds = new Map<string, number>();
  for (const file of logFiles(pgDir)) {
    const text = fs.readFileSync(file, 'utf8').slice(fromBytes.get(file) ?? 0);
    for (const entry of text.split(/\n(?=\d{4}-\d\d-\d\d )/)) {
      const match = entry.match(/(?:statement|execute [^:]*): ([\s\S]*)$/);
      if (!match) continue;
      const kind = match[1]!.replace(/\s+/g, ' ').trim().slice(0, 110);
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    }
  }
  return kinds;
}

function logFiles(pgDir: string): string[] {
  return fs
    .readdirSync(pgDir)
    .filter((name) => name.endsWith('.log'))
    .map((name) => path.join(pgDir, name));
}

async function watch(
  server: TestServer,
  pg: TestPostgres,
  db: ReturnType<TestPostgres['connect']>,
  receiver: Receiver,
): Promise<Window> {
  const logSizes = new Map(logFiles(pg.dir).map((file) => [file, fs.statSync(file).size]));
  await db.unsafe(`alter system set log_statement = 'all'`);
  await db`select pg_reload_conf()`;
  const cpu0 = processCpu(server, path.join(pg.dir, 'pg'));
  const writes0 = await tableWrites(db);
  const requests0 = receiver.requests.length;
  const started = performance.now();
  await sleep(WINDOW_S * 1000);
  const seconds = (performance.now() - started) / 1000;
  const cpu1 = processCpu(server, path.join(pg.dir, 'pg'));
  const requests = receiver.requests.length - requests0;
  await db.unsafe(`alter system set log_statement = 'none'`);
  await db`select pg_reload_conf()`;
  // A backend publishes its table counters at most once a second.
  await sleep(1_500);
  const writes1 = await tableWrites(db);
  const writes = new Map(
    [...writes1].map(([table, n]) => [table, n - (writes0.get(table) ?? 0)] as const).filter(([, n]) => n > 0),
  );
  const cpu = Object.fromEntries(Object.keys(cpu1).map((role) => [role, cpu1[role]! - cpu0[role]!]));
  return { seconds, requests, cpu, writes, statements: statementsLogged(pg.dir, logSizes) };
}

function print(label: string, window: Window, baseline: Window | null): void {
  const perSecond = window.requests / window.seconds;
  console.log(
    `${label}: ${window.requests} requests reached the receiver in ${window.seconds.toFixed(1)} s (${perSecond.toFixed(1)}/s: the timeouts)`,
  );
  for (const [role, seconds] of Object.entries(window.cpu)) {
    const core = seconds / window.seconds;
    const extra = baseline
      ? ` (${((seconds - baseline.cpu[role]!) / window.seconds).toFixed(3)} core over the baseline` +
        (window.requests > 0
          ? `, ${(((seconds - baseline.cpu[role]!) * 1e6) / window.requests).toFixed(0)} µs per timeout)`
          : ')')
      : '';
    console.log(`  cpu ${role}: ${core.toFixed(3)} core${extra}`);
  }
  for (const [table, n] of [...window.writes].sort((a, b) => b[1] - a[1]))
    console.log(`  row writes ${table}: ${(n / window.seconds).toFixed(1)}/s`);
  const total = [...window.statements.values()].reduce((sum, n) => sum + n, 0);
  console.log(`  statements: ${(total / window.seconds).toFixed(1)}/s; by kind:`);
  for (const [kind, n] of [...window.statements].sort((a, b) => b[1] - a[1]).slice(0, 12))
    console.log(`    ${(n / window.seconds).toFixed(1)}/s  ${kind}`);
}

await main();
