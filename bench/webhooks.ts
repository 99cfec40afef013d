/**
 * bench:webhooks: webhook delivery throughput and latency of the real server, next to a baseline
 * measured in the same run on this machine.
 *
 *   npm run bench:webhooks
 *   DELIVERY_WORKERS=2 npm run bench:webhooks             # passed through to the server
 *   BENCH_SCENARIOS=burst,latency npm run bench:webhooks  # a subset (baseline always runs)
 *   BENCH_SCENARIOS=keys npm run bench:webhooks           # ordering "key" over 1 000 keys beside unordered
 *   BENCH_JSON=1 npm run bench:webhooks                   # also print every figure as one JSON document
 *   BENCH_BURST_EVENTS, BENCH_FANOUT_EVENTS, BENCH_ISOLATION_EVENTS, BENCH_NOISY_EVENTS, BENCH_NOISY_ENDPOINTS, BENCH_KEYS_EVENTS, BENCH_KEYS_DISTINCT, BENCH_IN_FLIGHT,
 *   BENCH_SCENARIO_TIMEOUT_MS override the sizes in bench/webhooks/settings.ts.
 *
 * About 1 min 40 s in all on 2 cores (the Postgres counters' settling takes 5-12 s a scenario).
 *
 * Setup: `node dist/src/main.js` (WORKERS=2, its own embedded Postgres in a fresh temp dir,
 * WEBHOOK_ALLOW_HTTP/PRIVATE=true, WEBHOOK_TIMEOUT_MS=2000) and a receiver in a child process
 * (bench/webhook-receiver.ts: node:http on 127.0.0.1, answers 200 at once, records per path each
 * webhook-id and its arrival time). Each scenario uses its own org (rate limit 10 000 000/s) and
 * key, so no endpoint of one scenario sees another's events.
 *
 *   baseline   the receiver driven by a bare undici Pool, BASELINE_IN_FLIGHT requests in flight,
 *              the same kind of POST (≈280-byte JSON, three webhook-* headers): requests/s; run
 *              before the server starts and again after the scenarios, the better of the two is
 *              the reference (the machine is shared: both are printed)
 *   burst      1 endpoint, BURST_EVENTS events through POST /v1/events/batch (100 a batch,
 *              PRODUCERS concurrent producers): ingest rate; deliveries/s from the first batch
 *              answer to the last arrival; every accepted id arrived; lag = arrival − its batch's answer
 *   fanout     FANOUT_ENDPOINTS endpoints, FANOUT_EVENTS events: total deliveries/s, each endpoint got every event
 *   latency    one POST /v1/events every 25 ms for 8 s, 1 endpoint: arrival − 202, p50/p95/p99/max
 *              (product target: first attempt within 50 ms of the 202, median ≤ 20 ms)
 *   isolation  a healthy endpoint alone (ISOLATION_EVENTS burst), then again with a hanging and a
 *              failing (500) endpoint of the same org subscribed to the same events, then alone
 *              again: the healthy endpoint's deliveries/s beside them and its ratio to the mean of
 *              the two runs alone (target ≥ 0.9)
 *   noisy      noisy neighbour: org B's healthy endpoint alone (NOISY_EVENTS), then beside org A's
 *              NOISY_ENDPOINTS (1 000) endpoints whose receiver holds every request until the
 *              timeout, then alone again with A's endpoints deleted: B's deliveries/s beside A
 *              against the mean of its runs alone (target ≥ 0.9; bench/webhooks/noisy-scenario.ts)
 *   keys       an unordered endpoint (KEYS_EVENTS), one with ordering "key" whose events carry
 *              KEYS_DISTINCT (1 000) ordering keys in turn, the unordered one again: the keyed
 *              deliveries/s against the mean of the unordered runs (target ≥ 0.8; not in the
 *              default set, BENCH_SCENARIOS=keys; bench/webhooks/keys-scenario.ts)
 *
 * Per scenario: CPU seconds (utime+stime from /proc) of the delivery worker(s), the HTTP workers,
 * Postgres (the postmaster and its children), the receiver and this process, as µs per delivery;
 * Postgres row writes to the webhook and delivery tables (pg_stat_user_tables, read once the
 * counters are stable; they are flushed with a delay) and WAL bytes, per delivery, and the events
 * tables' inserts for reference; and the machine's busy CPU outside the measured processes (other
 * load on a shared machine makes a scenario's figures less comparable). A throughput scenario
 * that has not received everything after SCENARIO_TIMEOUT_MS prints what arrived and fails the
 * run (exit code 1, after cleaning up).
 *
 * Load goes to 127.0.0.1 only. Processes are stopped by their pid: the receiver, the server
 * (SIGTERM, then its process group SIGKILL if it does not exit) and, if the server left it
 * behind, its embedded Postgres; the temp dir is then removed.
 *
 * The pieces are under bench/webhooks/: run.ts the sequence above, scenarios.ts and the
 * *-scenario.ts files what each scenario does, baseline.ts the reference, measure.ts / cpu-split.ts /
 * pg-counters.ts what is measured around a scenario, report.ts what is printed.
 */
import { cleanup, started } from './webhooks/cleanup.js';
import { say } from './webhooks/output.js';
import { failures } from './webhooks/results.js';
import { runWebhooksBench } from './webhooks/run.js';
import { RUN_DEADLINE_MS } from './webhooks/settings.js';

let exitCode = 0;
const deadline = setTimeout(() => {
  process.stderr.write(
    `bench:webhooks: FAILED: the run did not finish within ${RUN_DEADLINE_MS / 60_000} minutes; cleaning up\n`,
  );
  void cleanup().finally(() => process.exit(1));
}, RUN_DEADLINE_MS);
deadline.unref();

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stderr.write(`bench:webhooks: ${signal}: cleaning up\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

try {
  await runWebhooksBench();
} catch (error) {
  exitCode = 1;
  failures.push(`error: ${error instanceof Error ? error.message : String(error)}`);
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  const tail = started.server?.tail(3_000);
  if (tail) process.stderr.write(`--- server output (tail) ---\n${tail}\n`);
} finally {
  await cleanup();
}
if (failures.length > 0) {
  say(`bench:webhooks: FAILED: ${failures.join('; ')}`);
  exitCode = 1;
} else {
  say('bench:webhooks: all events arrived');
}
process.exit(exitCode);
