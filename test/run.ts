import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run } from 'node:test';
import { spec, tap } from 'node:test/reporters';
import { fileURLToPath } from 'node:url';

/**
 * `npm test`: every test file, several at a time. Each file has its own Postgres cluster, ports
 * and server, so files share nothing; most of their time is spent waiting (retry schedules,
 * timed windows, process starts), which is why 4 at a time pays on 2 cores.
 *
 * TEST_CONCURRENCY overrides the number; arguments name files to run instead of all of them.
 */

// The longest files start first, so no long one is left to run alone at the end (measured: the
// "slowest files" line this prints at the end).
const LONGEST_FIRST = [
  'citus', 'supervision', 'webhook-endpoint-changes', 'webhooks-memory', 'ratelimit-accuracy', 'upgrade',
  'webhooks-delivery', 'metrics', 'write-isolation-property', 'db-faults', 'embedded-supervision', 'multinode',
  'webhooks-fanout', 'chaos', 'webhooks-nodes', 'fuzz', 'reliability', 'pm2', 'client', 'webhook-deadline',
  'postgres-outage', 'webhooks', 'root-home', 'inbox-page-bytes', 'webhooks-controls', 'delivery-wakes',
];

const here = path.dirname(fileURLToPath(import.meta.url));
const rank = (file: string) => {
  const index = LONGEST_FIRST.indexOf(path.basename(file, '.test.js'));
  return index === -1 ? LONGEST_FIRST.length : index;
};
const named = process.argv.slice(2).map((file) => path.resolve(file));
const files = named.length > 0
  ? named
  : fs.readdirSync(here).filter((name) => name.endsWith('.test.js')).map((name) => path.join(here, name))
    .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
const concurrency = Number(process.env.TEST_CONCURRENCY) || Math.max(4, os.availableParallelism());

let executed = 0;
const stream = run({ files, concurrency });
stream.on('test:pass', (event) => { if (event.details.type !== 'suite') executed++; });
stream.on('test:fail', (event) => {
  if (event.details.type !== 'suite') executed++;
  process.exitCode = 1;
});
// Each file's wall-clock time, from its process's start to its exit (hooks, server boots and
// Postgres included), printed at the end: the order above is kept by these.
const fileMs = new Map<string, number>();
stream.on('test:complete', (event) => {
  if (event.file && event.nesting === 0 && path.resolve(event.name) === event.file) fileMs.set(event.file, event.details.duration_ms);
});
stream.on('end', () => {
  const slowest = [...fileMs].map(([file, ms]) => [path.basename(file, '.test.js'), ms] as const)
    .sort((a, b) => b[1] - a[1]).slice(0, 24);
  process.stderr.write(`slowest files: ${slowest.map(([name, ms]) => `${name} ${(ms / 1000).toFixed(0)} s`).join(', ')}\n`);
  if (executed === 0) {
    process.stderr.write('no test was executed: that is a failure\n');
    process.exitCode = 1;
  }
});
// The format node --test would choose: TAP when read by a program (CI), spec on a terminal.
stream.compose(process.stdout.isTTY ? new spec() : tap).pipe(process.stdout);
