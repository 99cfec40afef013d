import cluster, { type Worker } from 'node:cluster';
import type { Config } from '../config.js';
import { openDatabase } from '../db/connect.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../db/embedded.js';
import { distributeOnCitus, isCitus } from '../db/citus.js';
import { ensurePartitions, migrate } from '../db/migrate.js';
import { loadedUwsBuild } from '../http/uws.js';
import { log } from '../log.js';
import { serveClusterMetrics } from '../metrics/cluster.js';
import { watchDeliveryBacklog } from '../metrics/delivery-backlog.js';
import { isDeliveryWake } from '../delivery/wake.js';
import { createFirstKeyIfEmpty } from '../ops/first-boot.js';
import { scheduleRetention } from '../ops/retention.js';
import { PrimaryLeaseStore } from '../ratelimit/ipc-store.js';
import { ENV_DATABASE_URL, ENV_ON_CITUS, ENV_ROLE, ENV_STARTED_AT, type WorkerMessage, type WorkerRole } from './messages.js';

const ignoreSendError = () => {};

// A worker that dies sooner than this after starting is crash-looping: wait before the next one.
const MIN_HEALTHY_MS = 5_000;

/**
 * The primary: boots the database (embedded unless DATABASE_URL), applies migrations, forks the
 * HTTP workers, replaces any that crash, and on SIGTERM/SIGINT drains them and exits 0.
 */
export async function runPrimary(config: Config): Promise<void> {
  const startedAt = Date.now();

  let embedded: EmbeddedPostgres | null = null;
  let databaseUrl = config.databaseUrl;
  if (!databaseUrl) {
    embedded = await startEmbeddedPostgres(config.dataDir, (message) => log.info(message), config.embeddedPgHome);
    databaseUrl = embedded.databaseUrl;
  }
  const sql = openDatabase(databaseUrl, { max: 2, name: 'triggers-primary' });
  const applied = await migrate(sql);
  if (applied.length > 0) log.info({ applied }, 'migrations applied');
  const distributed = await distributeOnCitus(sql);
  if (distributed.length > 0) log.info({ tables: distributed }, 'Citus: tables distributed by org_id (docs/SCALING.md)');
  await ensurePartitions(sql);
  if (embedded) await createFirstKeyIfEmpty(sql, config);

  // Partitions ahead, dropping expired days, expiring dedup ids: now, then every interval.
  const stopRetention = scheduleRetention(sql, config, config.retentionIntervalMs);

  serveClusterMetrics();
  watchDeliveryBacklog(sql);
  // The node's token buckets: workers lease from here without REDIS_URL, or while Redis is down.
  cluster.on('message', new PrimaryLeaseStore().onWorkerMessage);
  let shuttingDown = false;
  const workerEnv = { [ENV_DATABASE_URL]: databaseUrl, [ENV_STARTED_AT]: String(startedAt), [ENV_ON_CITUS]: (await isCitus(sql)) ? '1' : '0' };
  const roles = new Map<Worker, { role: WorkerRole; started: number }>();

  const fork = (role: WorkerRole): Promise<void> => {
    const worker = cluster.fork({ ...workerEnv, [ENV_ROLE]: role });
    roles.set(worker, { role, started: Date.now() });
    return new Promise((resolve) => {
      worker.on('message', (message: WorkerMessage) => {
        if (message?.type === 'ready') resolve();
      });
      worker.once('exit', () => resolve());
    });
  };

  cluster.on('exit', (worker, code, signal) => {
    const info = roles.get(worker);
    roles.delete(worker);
    if (shuttingDown || !info) return;
    log.error({ pid: worker.process.pid, code, signal, role: info.role }, 'worker died; starting a replacement');
    const delay = Date.now() - info.started < MIN_HEALTHY_MS ? 1000 : 0;
    setTimeout(() => { if (!shuttingDown) void fork(info.role); }, delay);
  });

  // Wake-ups from the HTTP workers (a flush committed, endpoints changed) go to every delivery
  // process of this node (src/delivery/wake.ts).
  cluster.on('message', (from: Worker, message: unknown) => {
    if (!isDeliveryWake(message)) return;
    // A delivery process that just died may still be listed: with a callback, a failed send is
    // reported there instead of as an 'error' event that would take the primary down.
    for (const [worker, info] of roles) if (info.role === 'delivery' && worker.isConnected()) worker.send(message, undefined, ignoreSendError);
  });

  // DELIVERY_WORKERS processes per node send webhooks (src/cluster/delivery-worker.ts); restarted like the others.
  await Promise.all([
    ...Array.from({ length: config.workers }, () => fork('http')),
    ...Array.from({ length: config.deliveryWorkers }, () => fork('delivery')),
  ]);
  const uws = loadedUwsBuild();
  log.info({ url: `http://${config.host}:${config.port}`, workers: config.workers, database: embedded ? `embedded (${config.dataDir})` : 'DATABASE_URL', redis: config.redisUrl ? 'REDIS_URL' : 'none', uws: `${uws.packageName} ${uws.fileName}` }, 'serving');
  process.stdout.write(`Triggers API serving on http://${config.host}:${config.port} with ${config.workers} HTTP workers; database: ${embedded ? `embedded Postgres in ${config.dataDir}` : 'DATABASE_URL'}; redis: ${config.redisUrl ? 'REDIS_URL' : 'not used (single node)'}\n`);

  const shutdown = async (signal: string) => {
    if (shuttingDown) return;
    shuttingDown = true;
    log.info({ signal }, 'shutting down: draining workers');
    stopRetention();
    const exits = [...roles.keys()].map((worker) => new Promise<void>((resolve) => {
      if (worker.isDead()) return resolve();
      worker.once('exit', () => resolve());
      worker.send({ type: 'shutdown' });
    }));
    const killTimer = setTimeout(() => {
      for (const worker of roles.keys()) if (!worker.isDead()) worker.process.kill('SIGKILL');
    }, config.shutdownTimeoutMs);
    await Promise.all(exits);
    clearTimeout(killTimer);
    await sql.end({ timeout: 1 });
    if (embedded) await embedded.stop();
    log.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}
