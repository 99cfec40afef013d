import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openDatabase, socketUrl } from '../src/db/connect.js';
import { createOrgWithKey } from '../test/helpers/api.js';
import { freePort, TestServer } from '../test/helpers/server.js';
import { wrkPost, type WrkResult } from './wrk.js';

/**
 * Load benchmark: the full server (embedded Postgres, durable 202s) against a bare uWS endpoint
 * that only parses the JSON, both driven by wrk in the same run on this machine. Prints a table
 * and one JSON document. Checks that the rows in Postgres match the 2xx answers.
 *
 *   npm run bench:load                      # 10 s per run, 64 connections
 *   BENCH_SECONDS=5 BENCH_CONNECTIONS=16,64 npm run bench:load
 */
const SECONDS = Number(process.env.BENCH_SECONDS || 10);
const CONNECTIONS = (process.env.BENCH_CONNECTIONS || '64').split(',').map(Number);
const WORKERS = Number(process.env.WORKERS || os.availableParallelism());
const here = path.dirname(fileURLToPath(import.meta.url));

const EVENT = JSON.stringify({
  type: 'bench.event',
  payload: { user_id: 12345, email: 'someone@example.com', plan: 'pro', tags: ['a', 'b', 'c'], amount: 49.5, note: 'x'.repeat(120) },
});

function requireWrk(): void {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      process.stderr.write('wrk is not installed: apt-get install -y wrk\n');
      process.exit(1);
    }
  }
}

async function startBare(port: number) {
  const proc = spawn(process.execPath, [path.join(here, 'bare-uws.js')], { env: { ...process.env, PORT: String(port), WORKERS: String(WORKERS) }, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => proc.stdout!.on('data', (d) => { if (String(d).includes('ready')) resolve(); }));
  return proc;
}

async function main(): Promise<void> {
  requireWrk();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'triggers-bench-'));
  fs.chmodSync(dataDir, 0o755);
  const server = await TestServer.start({ dataDir, workers: WORKERS });
  const results: Array<{ target: string; connections: number } & WrkResult> = [];
  try {
    const { key } = await createOrgWithKey(server.url, { name: 'bench', rate_limit_per_sec: 10_000_000, burst: 10_000_000 });
    const barePort = await freePort();
    const bare = await startBare(barePort);
    const headers = { 'Content-Type': 'application/json', Authorization: `Bearer ${key}` };
    const sql = openDatabase(socketUrl(path.join(dataDir, 'pg'), 'triggers'), { max: 1, name: 'bench' });
    try {
      for (const connections of CONNECTIONS) {
        results.push({ target: 'bare uWS', connections, ...(await wrkPost(`http://127.0.0.1:${barePort}/v1/events`, EVENT, headers, { connections, seconds: SECONDS })) });
        const before = Number((await sql`select count(*) as n from events`)[0]!.n);
        const full = await wrkPost(`${server.url}/v1/events`, EVENT, headers, { connections, seconds: SECONDS });
        await new Promise((resolve) => setTimeout(resolve, 500));
        const stored = Number((await sql`select count(*) as n from events`)[0]!.n) - before;
        const answered2xx = full.requests - full.non2xx;
        // wrk stops counting at the deadline while up to `connections` requests are in flight:
        // those may be stored without wrk seeing the 202.
        const consistent = stored >= answered2xx && stored - answered2xx <= connections;
        results.push({ target: 'full server', connections, ...full, ...{ stored, consistent } });
      }
    } finally {
      await sql.end({ timeout: 1 });
      bare.kill('SIGTERM');
    }
  } finally {
    await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }

  const lines = ['| target | conns | req/s | p50 ms | p90 ms | p99 ms | non-2xx | ratio to bare |', '|---|---|---|---|---|---|---|---|'];
  for (const r of results) {
    const bare = results.find((x) => x.target === 'bare uWS' && x.connections === r.connections)!;
    lines.push(`| ${r.target} | ${r.connections} | ${Math.round(r.rps)} | ${r.latencyMs.p50.toFixed(2)} | ${r.latencyMs.p90.toFixed(2)} | ${r.latencyMs.p99.toFixed(2)} | ${r.non2xx + r.socketErrors} | ${(r.rps / bare.rps).toFixed(2)} |`);
  }
  process.stdout.write(lines.join('\n') + '\n\n' + JSON.stringify({ machine: { cpus: os.availableParallelism(), node: process.version }, seconds: SECONDS, workers: WORKERS, results }, null, 2) + '\n');
  const inconsistent = results.filter((r) => 'consistent' in r && !(r as { consistent: boolean }).consistent);
  if (inconsistent.length > 0) {
    process.stderr.write('row count in Postgres does not match the 2xx answers\n');
    process.exit(1);
  }
}

main().catch((error) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
