import os from 'node:os';
import { argon2Bench, authCacheBench } from './micro/auth.bench.js';
import { batcherBench, copyEncodeBench } from './micro/copy.bench.js';
import { eventTypesBench } from './micro/event-types.bench.js';
import { filterBench } from './micro/filter.bench.js';
import { validateBench } from './micro/validate.bench.js';

/**
 * Microbenchmarks of the hot path, each against a baseline measured in the same run.
 *   npm run bench               # ~1 s per task
 *   BENCH_TIME_MS=200 npm run bench   # quick smoke run
 */
const time = Number(process.env.BENCH_TIME_MS || 1000);

async function main() {
  const rows = [
    ...(await validateBench(time)),
    ...(await eventTypesBench(time)),
    ...(await authCacheBench(time)),
    ...(await copyEncodeBench(time)),
    ...(await argon2Bench(time)),
    ...(await batcherBench(time)),
    ...(await filterBench(time)),
  ];
  process.stdout.write(
    '\n' +
      JSON.stringify({ node: process.version, cpus: os.availableParallelism(), time_ms: time, rows }, null, 2) +
      '\n',
  );
}

main().catch((error) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
