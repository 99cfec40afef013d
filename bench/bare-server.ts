import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../test/helpers/server.js';
import { treeCpu } from './proc-stats.js';
import { wrkPost } from './wrk.js';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The load benchmarks' event: one request body, and the payload alone (raw COPY writes it). */
export const BENCH_PAYLOAD = {
  user_id: 12345,
  email: 'someone@example.com',
  plan: 'pro',
  tags: ['a', 'b', 'c'],
  amount: 49.5,
  note: 'x'.repeat(120),
};
export const BENCH_EVENT = JSON.stringify({ type: 'bench.event', payload: BENCH_PAYLOAD });

/**
 * Starts bench/bare-uws.ts (the baseline: same uWS build, parse, answer 202) with `workers`
 * processes on `port`; resolves once every process listens. `env` adds its settings (BARE_HEADERS).
 */
export async function startBareUws(
  port: number,
  workers: number,
  env: Record<string, string> = {},
): Promise<ChildProcess> {
  const proc = spawn(process.execPath, [path.join(here, 'bare-uws.js')], {
    env: { ...process.env, PORT: String(port), WORKERS: String(workers), ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve) =>
    proc.stdout!.on('data', (d) => {
      if (String(d).includes('ready')) resolve();
    }),
  );
  return proc;
}

/**
 * One bare uWS run: start it on a free port, warm up for a second, then wrk for `seconds` at
 * `connections`; req/s and the CPU of its whole process tree per request, from /proc.
 */
export async function measureBareUws(options: {
  workers: number;
  connections: number;
  seconds: number;
  env?: Record<string, string>;
}): Promise<{ rps: number; usPerRequest: number }> {
  const port = await freePort();
  const proc = await startBareUws(port, options.workers, options.env);
  try {
    const url = `http://127.0.0.1:${port}/v1/events`;
    const headers = { 'Content-Type': 'application/json' };
    await wrkPost(url, BENCH_EVENT, headers, { connections: options.connections, seconds: 1 });
    const before = treeCpu(proc.pid!);
    const run = await wrkPost(url, BENCH_EVENT, headers, {
      connections: options.connections,
      seconds: options.seconds,
    });
    return { rps: run.rps, usPerRequest: ((treeCpu(proc.pid!) - before) * 1e6) / run.requests };
  } finally {
    proc.kill('SIGTERM');
  }
}
