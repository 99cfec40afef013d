import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { Pool } from 'undici';
import { freePort } from '../../test/helpers/server.js';
import { childrenOf, roleOf } from '../proc-stats.js';
import { runBaseline } from './baseline.js';
import { started } from './cleanup.js';
import type { ScenarioContext } from './measure.js';
import { fmt, say } from './output.js';
import { settledPgCounters } from './pg-counters.js';
import { ReceiverProcess } from './receiver-process.js';
import { printTable } from './report.js';
import { rows } from './results.js';
import { runScenarios } from './scenarios.js';
import { ServerProcess } from './server-process.js';
import { BASELINE_IN_FLIGHT, BASELINE_REQUESTS, PRODUCERS, WEBHOOK_TIMEOUT_MS } from './settings.js';

/** The whole run: baseline, server, scenarios, baseline again, table. Leaves stopping to cleanup(). */
export async function runWebhooksBench(): Promise<void> {
  say(
    `bench:webhooks on ${os.availableParallelism()} cores, node ${process.version}; server WORKERS=2${process.env.DELIVERY_WORKERS ? `, DELIVERY_WORKERS=${process.env.DELIVERY_WORKERS}` : ''}, WEBHOOK_TIMEOUT_MS=${WEBHOOK_TIMEOUT_MS}`,
  );
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'triggers-bench-webhooks-'));
  fs.chmodSync(dataDir, 0o755); // as root, Postgres runs as the "postgres" user and must reach its directory
  started.dataDir = dataDir;

  const receiver = await ReceiverProcess.start();
  started.receiver = receiver;
  say(`receiver (pid ${receiver.proc.pid}) on 127.0.0.1:${receiver.port}`);

  say(`baseline: ${fmt(BASELINE_REQUESTS)} POSTs from a bare undici Pool, ${BASELINE_IN_FLIGHT} in flight`);
  await runBaseline(receiver, 'baseline (start)');

  const server = ServerProcess.spawn(dataDir, await freePort());
  started.server = server;
  const booted = Date.now();
  await server.waitReady(120_000);
  say(
    `server (pid ${server.proc.pid}) serving on ${server.url} after ${fmt((Date.now() - booted) / 1000, 1)} s; data dir ${dataDir}`,
  );

  const sql = postgres({
    host: server.pgDir,
    port: 5432,
    user: 'postgres',
    database: 'triggers',
    max: 1,
    onnotice: () => {},
    idle_timeout: 0,
    connection: { application_name: 'bench-webhooks' },
  });
  started.sql = sql;
  const ingest = new Pool(server.url, { connections: PRODUCERS * 2, pipelining: 1, keepAliveTimeout: 30_000 });
  started.ingest = ingest;

  const roles = childrenOf(server.proc.pid!).map(
    (pid) => `${pid}:${roleOf(pid) ?? (pid === server.postmasterPid() ? 'postmaster' : '?')}`,
  );
  say(`server processes: primary ${server.proc.pid}, children ${roles.join(' ')}`);

  const ctx: ScenarioContext = { server, receiver, sql, ingest, pgBefore: await settledPgCounters(sql) };
  await runScenarios(ctx);

  say(`\nbaseline again, the server idle`);
  await runBaseline(receiver, 'baseline (end)');

  printTable(rows);
  if (process.env.BENCH_JSON === '1') {
    say(
      JSON.stringify(
        {
          machine: { cpus: os.availableParallelism(), node: process.version },
          delivery_workers: process.env.DELIVERY_WORKERS ?? null,
          rows,
        },
        null,
        2,
      ),
    );
  }
}
