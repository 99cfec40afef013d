import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createOrgWithKey } from '../test/helpers/api.js';
import { TestServer } from '../test/helpers/server.js';
import { BENCH_EVENT, measureBareUws } from './bare-server.js';
import { diffCpu, serverCpu } from './proc-stats.js';
import { wrkPost } from './wrk.js';

/**
 * What waiting for the durable commit costs single-event ingest (issue #14's "which measured cost
 * stands in the way"). Three servers, the same wrk load, alternating rounds:
 *   bare uWS      bench/bare-uws.ts, the load benchmark's baseline
 *   no commit     a copy of this build whose flushes encode their rows and then resolve on the next
 *                 turn of the event loop instead of writing them: the same request path (auth,
 *                 rate limit, validation, batching, headers) without the database. It STORES
 *                 NOTHING and exists only in a scratch copy made here (.bench-no-commit/).
 *   full server   this build, every 202 after COMMIT
 * Prints req/s, the ratio to bare uWS, and CPU per request of the HTTP workers and of Postgres.
 *
 *   npm run build && node dist/bench/commit-wait.js    # BENCH_CONNECTIONS (64), BENCH_SECONDS (8), BENCH_ROUNDS (2)
 */
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS || 64);
const SECONDS = Number(process.env.BENCH_SECONDS || 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS || 2);
const WORKERS = Number(process.env.WORKERS || os.availableParallelism());
const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.resolve(here, '..');
const repo = path.resolve(dist, '..');

/** The scratch build: inside the checkout, so its imports find node_modules. */
const SCRATCH = path.join(repo, '.bench-no-commit');

function noCommitBuild(): string {
  const copy = path.join(SCRATCH, 'dist');
  fs.rmSync(SCRATCH, { recursive: true, force: true });
  fs.cpSync(dist, copy, { recursive: true });
  // What the build reads beside dist/: the migrations and package.json.
  fs.symlinkSync(path.join(repo, 'sql'), path.join(SCRATCH, 'sql'));
  fs.copyFileSync(path.join(repo, 'package.json'), path.join(SCRATCH, 'package.json'));
  const file = path.join(copy, 'src', 'ingest', 'batcher.js');
  const source = fs.readFileSync(file, 'utf8');
  const write =
    /await this\.copyPool\.copyFenced\(FLUSH_FENCE, (COPY_EVENTS(?:_BINARY)?), (encode\w+Rows\(batch\))\);/g;
  const patched = source.replace(write, '{ $2; await new Promise((resolve) => setImmediate(resolve)); }');
  if ((source.match(write) ?? []).length !== 2)
    throw new Error(`${file}: the two COPY calls of flushBatch were not found; update bench/commit-wait.ts`);
  fs.writeFileSync(file, patched);
  return path.join(copy, 'src', 'main.js');
}

interface Measured {
  rps: number;
  httpUs: number;
  postgresUs: number;
}

async function measureServer(main: string | undefined): Promise<Measured> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'triggers-bench-'));
  fs.chmodSync(dataDir, 0o755);
  const server = await TestServer.start({ dataDir, workers: WORKERS, main, cwd: repo, env: { LOG_LEVEL: 'warn' } });
  try {
    const { key } = await createOrgWithKey(server.url, {
      name: 'bench',
      rate_limit_per_sec: 10_000_000,
      burst: 10_000_000,
    });
    const headers = { 'Content-Type': 'application/json', Authorization: `Bearer ${key}` };
    await wrkPost(`${server.url}/v1/events`, BENCH_EVENT, headers, { connections: CONNECTIONS, seconds: 1 });
    const before = serverCpu(server.proc.pid!);
    const run = await wrkPost(`${server.url}/v1/events`, BENCH_EVENT, headers, {
      connections: CONNECTIONS,
      seconds: SECONDS,
    });
    const cpu = diffCpu(serverCpu(server.proc.pid!), before);
    if (run.non2xx + run.socketErrors > 0)
      throw new Error(`${run.non2xx} non-2xx answers and ${run.socketErrors} socket errors`);
    return {
      rps: run.rps,
      httpUs: (cpu.http_workers! * 1e6) / run.requests,
      postgresUs: (cpu.postgres! * 1e6) / run.requests,
    };
  } finally {
    await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

async function measureBare(): Promise<Measured> {
  const { rps, usPerRequest } = await measureBareUws({ workers: WORKERS, connections: CONNECTIONS, seconds: SECONDS });
  return { rps, httpUs: usPerRequest, postgresUs: 0 };
}

async function main(): Promise<void> {
  const noCommitMain = noCommitBuild();
  const variants: Array<[string, () => Promise<Measured>]> = [
    ['bare uWS', measureBare],
    ['no commit (stores nothing)', () => measureServer(noCommitMain)],
    ['full server', () => measureServer(undefined)],
  ];
  const lines = [
    `| variant | round | req/s | ratio to bare uWS | HTTP workers µs/request | Postgres µs/request |`,
    '|---|---|---|---|---|---|',
  ];
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      const results = new Map<string, Measured>();
      for (const [name, measure] of round % 2 === 1 ? variants : [...variants].reverse()) {
        results.set(name, await measure());
        process.stderr.write(`round ${round}: ${name} ${Math.round(results.get(name)!.rps)} req/s\n`);
      }
      const bare = results.get('bare uWS')!;
      for (const [name] of variants) {
        const result = results.get(name)!;
        lines.push(
          `| ${name} | ${round} | ${Math.round(result.rps)} | ${(result.rps / bare.rps).toFixed(2)} | ${result.httpUs.toFixed(1)} | ${name === 'bare uWS' ? '' : result.postgresUs.toFixed(1)} |`,
        );
      }
    }
  } finally {
    fs.rmSync(SCRATCH, { recursive: true, force: true });
  }
  process.stdout.write(
    `\nsingle-event POST, ${CONNECTIONS} connections, ${SECONDS} s, ${WORKERS} workers (bare uWS: its whole process tree)\n${lines.join('\n')}\n`,
  );
}

main().catch((error) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
