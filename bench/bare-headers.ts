import os from 'node:os';
import { measureBareUws } from './bare-server.js';

/**
 * What the contract's response headers cost uWS: the bare server (bench/bare-uws.ts) with no extra
 * headers, with the server's five (X-Request-Id, X-Response-Time, RateLimit-*) one call each, and
 * joined in one call as src/http/respond.ts writes them. CPU of the bare server's processes per
 * request from /proc, alternating the order between rounds. BARE_MODES=strings,encoded instead
 * compares the server's header reads and writes with every constant passed to uWS as a string or
 * as bytes encoded once.
 *
 *   npm run build && node dist/bench/bare-headers.js     # BENCH_SECONDS (5), BENCH_ROUNDS (3)
 *   BARE_MODES=strings,encoded BENCH_ROUNDS=6 node dist/bench/bare-headers.js
 */
const SECONDS = Number(process.env.BENCH_SECONDS || 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS || 3);
// BARE_MODES picks some: 'strings,encoded' compares constants passed as strings or encoded once.
const MODES = (process.env.BARE_MODES || 'none,separate,joined').split(',');
async function measure(mode: string): Promise<{ rps: number; us: number }> {
  const { rps, usPerRequest } = await measureBareUws({
    workers: os.availableParallelism(),
    connections: 64,
    seconds: SECONDS,
    env: { BARE_HEADERS: mode },
  });
  return { rps, us: usPerRequest };
}

const results = new Map<string, number[]>(MODES.map((mode) => [mode, []]));
for (let round = 0; round < ROUNDS; round++) {
  for (const mode of round % 2 === 0 ? MODES : [...MODES].reverse()) {
    const { rps, us } = await measure(mode);
    results.get(mode)!.push(us);
    process.stderr.write(
      `round ${round + 1}, headers ${mode}: ${Math.round(rps)} req/s, ${us.toFixed(2)} µs CPU per request\n`,
    );
  }
}
const lines = ['| extra headers | µs CPU per request, each round | mean |', '|---|---|---|'];
for (const [mode, values] of results)
  lines.push(
    `| ${mode} | ${values.map((v) => v.toFixed(2)).join(', ')} | ${(values.reduce((a, b) => a + b, 0) / values.length).toFixed(2)} |`,
  );
process.stdout.write(lines.join('\n') + '\n');
