import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run } from 'node:test';
import { spec, tap } from 'node:test/reporters';
import { fileURLToPath } from 'node:url';
import { SHARED_PG_ENV, TestPostgres } from './helpers/postgres.js';

/**
 * `npm test`: every test file but the extended ones, several at a time. Each file has its own
 * ports, servers and databases, so files share no rows; most create their databases in one
 * Postgres cluster that this runner starts for the run (TestPostgres.shared()), and the files that
 * stop, pause or starve Postgres, or read cluster-wide views, start a cluster of their own
 * (TestPostgres.start()). 6 at a time keep 2 cores busy (4 for the extended and browser sets,
 * below): the suite is CPU-bound, mostly by process starts (docs/PERFORMANCE.md "Test suite time").
 *
 * `npm run test:extended` (`--extended`): the long fault-injection, multi-node and soak files
 * listed in EXTENDED below; `npm run test:browser` (`--browser`): the console in Chromium (BROWSER);
 * `--all` runs every set at once. CI runs `npm test`, then the browser set, then the extended set.
 * TEST_CONCURRENCY overrides the number; arguments name files to run instead of a set.
 *
 * `npm test` starts this runner with `node --no-opt`: Node passes the flag to each file's process
 * and TestServer to the servers they start (test/helpers/server.ts TEST_NODE_FLAGS).
 */

// The longest files start first, so no long one is left to run alone at the end (measured: the
// "slowest files" line this prints at the end).
const LONGEST_FIRST = [
  // npm test (2026-12-05, eighth session: the "slowest files" lines of four runs; a file left
  // unranked starts after these, and one of ~20 s starting last kept the run waiting ~5 s)
  // The console's browser files start first: each runs a Chromium beside its server.
  'console-endpoints',
  'console-groups',
  'console',
  'client',
  'webhooks-delivery',
  'openapi',
  'metrics',
  'embedded',
  'groups',
  'postgres-tls',
  'destinations',
  'webhooks',
  'webhooks-controls',
  'ingest',
  'auth-before-body',
  'events-list',
  'auth',
  'event-types',
  'delivery-wakes',
  'wire',
  'webhook-guards',
  'write-isolation',
  'external-postgres',
  'cluster',
  'ratelimit',
  'endpoint-stats',
  'ops-kit',
  'inbox',
  'console-files',
  'dedup-flush',
  'webhooks-keys',
  'webhooks-fairness',
  'logging',
  'webhook-libraries',
  'retention',
  // extended files that were once in npm test
  'inbox-page-bytes',
  'webhooks-fanout',
  'webhook-deadline',
  'inbox-no-skip',
  // npm run test:extended
  'citus',
  'upgrade',
  'webhook-endpoint-changes',
  'supervision',
  'webhooks-memory',
  'write-isolation-property',
  'pm2',
  'webhooks-nodes',
  'embedded-supervision',
  'reliability',
  'ratelimit-accuracy',
  'multinode',
  'fuzz',
  'postgres-outage',
  'chaos',
  'durability',
  'webhooks-upgrade',
  'status-flood',
];

/**
 * The extended set: files that kill, stop or starve processes and Postgres under load, run
 * several nodes or a Citus cluster, or hold a load, a soak or a property run for tens of seconds.
 * Together they are about half of the suite's CPU (measured per file, docs/PERFORMANCE.md "Test
 * suite time"), so `npm test` stays under 3 minutes on 2 cores without them. A new file is in
 * `npm test` unless it is named here.
 */
const EXTENDED = new Set([
  // faults and supervision: SIGKILL, Postgres stopped, stalled or failing, backends terminated
  'chaos',
  'db-faults',
  'drain-aborts',
  'durability',
  'embedded-supervision',
  'postgres-outage',
  'status-flood',
  'supervision',
  // consumer groups over two workers: 8 producers, SIGKILL of the server, a killed consumer
  'groups-server',
  // several nodes, several delivery processes, Citus
  'citus',
  'multinode',
  'webhook-endpoint-changes',
  'webhooks-nodes',
  'event-types-nodes',
  // webhook delivery shared by two nodes, and across a SIGKILL of the delivery worker
  'webhooks-delivery-faults',
  // ordering "key" across a SIGKILL of the delivery worker and over two delivery processes
  'webhooks-keys-faults',
  // brokers (RabbitMQ, NATS, Redis) restarted in the middle of a burst, stopped, frozen, gone
  // silent, refusing: the server end to end, and each publisher on its own
  'destinations-faults',
  'destination-publishers',
  // hostile schemas fed 256 KiB payloads under timing
  'event-types-hostile',
  // hostile receivers held to the send deadline (dripping, silent, 1 GiB answers: each waits out
  // WEBHOOK_TIMEOUT_MS); the contract's timeout and retry stay in npm test (webhooks-delivery)
  'webhook-deadline',
  // load far above capacity, long windows, soaks and property runs; inbox-page-bytes: the HTTP
  // workers' memory with 4 clients paging 256 KiB payloads (the 8 MiB page itself: inbox.test.ts)
  'inbox-page-bytes',
  // no skip under load: 8 producers committing out of order across two HTTP workers while
  // consumers follow cursors (the inbox) and the fan-out delivers (watermark.test.ts and
  // webhooks.test.ts keep the rule and the basics in npm test)
  'inbox-no-skip',
  'webhooks-fanout',
  'fuzz',
  'lease-writes',
  'ratelimit-accuracy',
  'reliability',
  'webhooks-memory',
  'write-isolation-property',
  // secrets at rest through server restarts under no key, key A, key B and a wrong key, with
  // secrets:rotate beside a running server (destinations.test.ts keeps sealing in npm test)
  'secrets-at-rest',
  // installs and upgrades: pm2, a root-owned checkout, old schemas and a Citus migration
  'pm2',
  'root-home',
  'upgrade',
  'webhooks-upgrade',
]);

/**
 * The browser set (`npm run test:browser`, `--browser`): the console in Debian's Chromium, page by
 * page. Apart from npm test because a Chromium beside each server costs the CPU that would take
 * npm test past 3 minutes on 2 cores (docs/PERFORMANCE.md "Test suite time"); the console's files
 * and headers stay in npm test (console-files). CI runs all three sets.
 */
const BROWSER = new Set(['console', 'console-groups', 'console-endpoints']);

const here = path.dirname(fileURLToPath(import.meta.url));
const rank = (file: string) => {
  const index = LONGEST_FIRST.indexOf(path.basename(file, '.test.js'));
  return index === -1 ? LONGEST_FIRST.length : index;
};
const flags = new Set(process.argv.slice(2).filter((arg) => arg.startsWith('--')));
for (const flag of flags) {
  if (flag !== '--extended' && flag !== '--browser' && flag !== '--all')
    throw new Error(`unknown option ${flag}: --extended, --browser or --all`);
}
const named = process.argv
  .slice(2)
  .filter((arg) => !arg.startsWith('--'))
  .map((file) => path.resolve(file));
const setOf = (file: string) => {
  const name = path.basename(file, '.test.js');
  return BROWSER.has(name) ? '--browser' : EXTENDED.has(name) ? '--extended' : 'npm test';
};
const inSet = (file: string) =>
  flags.has('--all') ||
  setOf(file) === (flags.has('--browser') ? '--browser' : flags.has('--extended') ? '--extended' : 'npm test');
// The console's unit tests are compiled apart (console/tsconfig.unit.json: its DOM types) and run
// with npm test.
const CONSOLE_UNIT = path.join(here, '../console-unit/console/test');
const testFiles = (dir: string) =>
  fs.existsSync(dir)
    ? fs
        .readdirSync(dir)
        .filter((name) => name.endsWith('.test.js'))
        .map((name) => path.join(dir, name))
    : [];
const files =
  named.length > 0
    ? named
    : [...testFiles(here), ...testFiles(CONSOLE_UNIT)]
        .filter(inSet)
        .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
// npm test: 6 files at a time on 2 cores. Its files mostly wait (retry schedules, long polls,
// servers starting), so 4 left cores idle: 145 and 151 s against 165 and 158 s with 4, alternating
// on the same machine (docs/PERFORMANCE.md "Test suite time"). The extended and browser sets stay
// at 4: their loads, soaks and accuracy windows measure what the machine gives them.
const quickSet = !flags.has('--extended') && !flags.has('--browser') && !flags.has('--all');
const concurrency = Number(process.env.TEST_CONCURRENCY) || Math.max(quickSet ? 6 : 4, os.availableParallelism());

// One Postgres cluster for the run: the files that ask for TestPostgres.shared() create their
// databases in it instead of copying, starting and stopping a cluster each. Not for the unit
// layer alone (npm run test:unit), which has no database.
const sharedPostgres = files.every((file) => path.basename(file).startsWith('unit-'))
  ? null
  : await TestPostgres.startShared();
if (sharedPostgres) process.env[SHARED_PG_ENV] = sharedPostgres.dir;

let executed = 0;
const stream = run({ files, concurrency });
stream.on('test:pass', (event) => {
  if (event.details.type !== 'suite') executed++;
});
stream.on('test:fail', (event) => {
  if (event.details.type !== 'suite') executed++;
  process.exitCode = 1;
});
// Each file's wall-clock time, from its process's start to its exit (hooks, server boots and
// Postgres included), printed at the end: the order above is kept by these.
const fileMs = new Map<string, number>();
stream.on('test:complete', (event) => {
  if (event.file && event.nesting === 0 && path.resolve(event.name) === event.file)
    fileMs.set(event.file, event.details.duration_ms);
});
stream.on('end', () => {
  const slowest = [...fileMs]
    .map(([file, ms]) => [path.basename(file, '.test.js'), ms] as const)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 24);
  process.stderr.write(
    `slowest files: ${slowest.map(([name, ms]) => `${name} ${(ms / 1000).toFixed(0)} s`).join(', ')}\n`,
  );
  if (executed === 0) {
    process.stderr.write('no test was executed: that is a failure\n');
    process.exitCode = 1;
  }
  sharedPostgres
    ?.stop()
    .catch((error: unknown) => process.stderr.write(`stopping the shared Postgres failed: ${String(error)}\n`));
});
// The format node --test would choose: TAP when read by a program (CI), spec on a terminal.
stream.compose(process.stdout.isTTY ? new spec() : tap).pipe(process.stdout);
