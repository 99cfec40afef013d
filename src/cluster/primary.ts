import cluster, { type Worker } from 'node:cluster';
import { ENV_ON_CITUS, type Config } from '../config.js';
import { openDatabase, type Sql } from '../db/connect.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../db/embedded.js';
import { claimDataDir, type DataDirLock } from '../db/embedded-lock.js';
import { distributeOnCitus, isCitus } from '../db/citus.js';
import { ensurePartitions, migrate } from '../db/migrate.js';
import { loadedUwsBuild } from '../http/uws.js';
import { log } from '../log.js';
import { serveClusterMetrics } from '../metrics/cluster.js';
import { watchDeliveryBacklog } from '../metrics/delivery-backlog.js';
import { workerRestarts } from '../metrics/metrics.js';
import { GroupWakeRouter } from '../groups/wake.js';
import { createFirstKeyIfEmpty } from '../ops/first-boot.js';
import { scheduleRetention } from '../ops/retention.js';
import { PrimaryLeaseStore } from '../ratelimit/ipc-store.js';
import { reportStoredSecretKeys } from '../secrets/stored-keys.js';
import { isMessage, sendToWorker } from '../ipc.js';
import { listenProblem } from './listen-check.js';
import { ENV_DATABASE_URL, ENV_STARTED_AT } from './worker-env.js';
import { StartFailed, WorkerSupervisor } from './supervisor.js';

/** Thrown for a start that cannot go on: main.ts prints the message as it is and exits 1. */
class CannotStart extends Error {}

/**
 * The primary: boots the database (embedded unless DATABASE_URL), applies migrations, forks the
 * workers and keeps them at their count (./supervisor.ts), and on SIGTERM/SIGINT drains them and
 * exits 0. A start that cannot serve (port taken, a worker dying before it is ready, DATA_DIR held
 * by another server) exits 1 with one message, having stopped what it started; so does a role
 * that cannot stay up (CRASH_LOOP_LIMIT), so that pm2 or systemd sees a failure.
 */
export async function runPrimary(config: Config): Promise<void> {
  const startedAt = Date.now();

  // One data folder, one server: refused before anything changes (src/db/embedded-lock.ts).
  const lock: DataDirLock | null = config.databaseUrl
    ? null
    : claimDataDir(config.dataDir, { kind: 'server', host: config.host, port: config.port });
  // A port in use, a HOST that is not ours: say so now, before Postgres boots.
  const problem = await listenProblem(config.host, config.port);
  if (problem) {
    lock?.release();
    throw new CannotStart(problem);
  }

  let embedded: EmbeddedPostgres | null = null;
  let sql: Sql | null = null;
  let supervisor: WorkerSupervisor | null = null;
  let shuttingDown = false;
  /** Stops everything this start began, in order, and exits with `code`. */
  const stopAll = async (code: number) => {
    if (supervisor) await supervisor.stop();
    await sql?.end({ timeout: 1 });
    if (embedded) await embedded.stop();
    else lock?.release();
    log.info('stopped');
    process.exit(code);
  };
  let serving = false;
  const fail = async (message: string) => {
    if (shuttingDown) return;
    shuttingDown = true;
    log.fatal({ reason: message }, 'stopping: cannot serve');
    process.stderr.write(`Triggers API ${serving ? 'stopped' : 'failed to start'}: ${message}\n`);
    stopRetention?.();
    await stopAll(1);
  };
  let stopRetention: (() => void) | null = null;
  // From the start on: a stop asked for while booting stops what has started, and exits 0.
  const shutdown = async (signal: string) => {
    if (shuttingDown) return;
    shuttingDown = true;
    log.info({ signal }, 'shutting down: draining workers');
    stopRetention?.();
    await stopAll(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));

  try {
    let databaseUrl = config.databaseUrl;
    if (!databaseUrl) {
      workerRestarts.inc({ role: 'postgres' }, 0);
      embedded = await startEmbeddedPostgres(config.dataDir, (message) => log.info(message), config.embeddedPgHome, {
        lock: lock!,
        supervise: {
          onRestart: () => workerRestarts.inc({ role: 'postgres' }),
          onDown: (message) => log.error(message),
          onUp: (message) => log.info(message),
        },
      });
      databaseUrl = embedded.databaseUrl;
    }
    sql = openDatabase(databaseUrl, { max: 2, name: 'triggers-primary' });
    const applied = await migrate(sql);
    if (applied.length > 0) log.info({ applied }, 'migrations applied');
    const distributed = await distributeOnCitus(sql);
    if (distributed.length > 0)
      log.info({ tables: distributed }, 'Citus: tables distributed by org_id (docs/SCALING.md)');
    await ensurePartitions(sql);
    if (embedded) await createFirstKeyIfEmpty(sql, config);
    // A secret sealed under a key we were not given is said now, not only at each failed delivery.
    await reportStoredSecretKeys(sql);

    // Partitions ahead, dropping expired days, expiring dedup ids: now, then every interval.
    stopRetention = scheduleRetention(sql, config, config.retentionIntervalMs);

    serveClusterMetrics();
    watchDeliveryBacklog(sql);
    // The node's token buckets: workers lease from here without REDIS_URL, or while Redis is down.
    cluster.on('message', new PrimaryLeaseStore().onWorkerMessage);
    const workers = new WorkerSupervisor({
      env: {
        [ENV_DATABASE_URL]: databaseUrl,
        [ENV_STARTED_AT]: String(startedAt),
        [ENV_ON_CITUS]: (await isCitus(sql)) ? '1' : '0',
      },
      // DELIVERY_WORKERS processes per node send webhooks (src/cluster/delivery-worker.ts).
      counts: { http: config.workers, delivery: config.deliveryWorkers },
      crashLoop: { limit: config.crashLoopLimit, windowMs: config.crashLoopWindowMs },
      shutdownTimeoutMs: config.shutdownTimeoutMs,
      onGiveUp: (reason) => void fail(reason),
    });
    supervisor = workers;

    // Wake-ups from the HTTP workers (a flush committed, endpoints changed) go to every delivery
    // process of this node (src/delivery/wake.ts).
    cluster.on('message', (_from: Worker, message: unknown) => {
      if (!isMessage(message, 'delivery_wake')) return;
      for (const worker of workers.connected('delivery')) sendToWorker(worker, message);
    });

    // Long-poll receives: which HTTP worker waits for which org, and commits forwarded to them
    // (src/groups/wake.ts).
    const groupWakes = new GroupWakeRouter(() => workers.connected('http'), config.redisUrl);
    cluster.on('message', groupWakes.onWorkerMessage);
    cluster.on('exit', groupWakes.onWorkerExit);

    await workers.start();
  } catch (error) {
    if (!(error instanceof StartFailed) && !(error instanceof CannotStart) && !embedded && !supervisor) {
      lock?.release();
      throw error; // no embedded Postgres and no workers to stop: main.ts reports it and exits 1
    }
    const message = error instanceof Error ? error.message : String(error);
    if (!(error instanceof StartFailed)) log.error({ err: error }, 'start-up failed');
    await fail(message);
    return;
  }

  serving = true;
  const uws = loadedUwsBuild();
  log.info(
    {
      url: `http://${config.host}:${config.port}`,
      workers: config.workers,
      database: embedded ? `embedded (${config.dataDir})` : 'DATABASE_URL',
      redis: config.redisUrl ? 'REDIS_URL' : 'none',
      uws: `${uws.packageName} ${uws.fileName}`,
    },
    'serving',
  );
  process.stdout.write(
    `Triggers API serving on http://${config.host}:${config.port} with ${config.workers} HTTP workers; database: ${embedded ? `embedded Postgres in ${config.dataDir}` : 'DATABASE_URL'}; redis: ${config.redisUrl ? 'REDIS_URL' : 'not used (single node)'}\n`,
  );
}
