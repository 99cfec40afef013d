import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type { Config } from '../config.js';
import { ENV_DATABASE_URL } from './worker-env.js';
import { onShutdownRequest } from './shutdown-signals.js';
import { sendToPrimary } from '../ipc.js';
import { openDatabase } from '../db/connect.js';
import { log } from '../log.js';
import { DeliveryEngine } from '../delivery/engine.js';
import { LeaseKeeper } from '../delivery/leases.js';
import { WebhookSender } from '../delivery/sender.js';
import { httpWires } from '../delivery/http-wire.js';
import { destinationWires } from '../destinations/wires.js';
import { listenForEndpointChanges, listenForWakes } from '../delivery/wake.js';
import { watchDeliveriesInFlight } from '../metrics/metrics.js';
import { subscribeMetrics } from '../metrics/subscribe.js';
import { removeExpiredDeliveries, removeExpiredStats } from '../ops/retention.js';

const HEARTBEAT_MS = 2_000;
// A lease outlives a few missed heartbeats (a GC pause, a slow query), and a SIGKILLed process's
// endpoints are taken over within this long.
const LEASE_TTL_MS = 10_000;
const CLEANUP_INTERVAL_MS = 3_600_000;

/**
 * A delivery process (role "delivery"; DELIVERY_WORKERS per node, forked by the primary). It holds
 * leases on a fair share of the enabled endpoints and streams each one's events to it
 * (src/delivery/engine.ts). Everything it knows is in Postgres, so a crash loses nothing: its
 * leases expire and other processes carry on from the persisted cursors.
 */
export async function runDeliveryWorker(config: Config): Promise<void> {
  const sql = openDatabase(process.env[ENV_DATABASE_URL]!, {
    max: 8,
    name: 'triggers-delivery',
    onCitus: config.onCitus,
  });
  const workerId = randomUUID();
  await sql`insert into delivery_workers (id, host, pid) values (${workerId}, ${os.hostname()}, ${process.pid})`;

  const sender = new WebhookSender({ timeoutMs: config.webhookTimeoutMs, allowPrivate: config.webhookAllowPrivate });
  const leases = new LeaseKeeper(sql, workerId, LEASE_TTL_MS, LEASE_TTL_MS);
  const wires = destinationWires(httpWires(sender), {
    timeoutMs: config.webhookTimeoutMs,
    allowedHosts: config.destinationAllowedHosts,
  });
  const engine = new DeliveryEngine(sql, wires, leases, {
    retryScheduleMs: config.webhookRetryScheduleMs,
    disableAfterHours: config.webhookDisableAfterHours,
    defaultMaxInFlight: config.webhookEndpointConcurrency,
    maxInFlight: config.deliveryMaxInFlight,
    bufferBytes: config.deliveryBufferBytes,
    endpointBufferBytes: config.webhookEndpointBufferBytes,
    pollIntervalMs: config.deliveryPollMs,
  });
  subscribeMetrics();
  watchDeliveriesInFlight(engine);
  const stopListening = listenForWakes(config.redisUrl, (wake) => {
    engine.eventsCommitted(wake.orgs.includes('*') ? '*' : wake.orgs);
    if (wake.endpoints) engine.endpointsChanged(wake.orgs.includes('*') ? undefined : wake.orgs);
  });
  // Endpoint changes from any node, by Postgres NOTIFY (API.md §5: they apply on every process and node).
  const stopListeningForChanges = await listenForEndpointChanges(sql, (orgId) =>
    engine.endpointsChanged(orgId ? [orgId] : undefined),
  );
  await engine.sync();
  engine.start();

  const heartbeat = setInterval(() => {
    sql`update delivery_workers set heartbeat_at = now() where id = ${workerId}`
      .then(() => engine.sync())
      .catch((error) => log.error({ err: error }, 'delivery worker heartbeat failed'));
  }, HEARTBEAT_MS);

  const cleanup = setInterval(() => {
    removeExpiredDeliveries(sql, config.retentionDays)
      .then(() => removeExpiredStats(sql))
      // Rows of delivery processes silent for a day: they crashed; their leases expired long ago.
      .then(() => sql`delete from delivery_workers where heartbeat_at < now() - interval '1 day'`)
      .then(() => leases.removeStale())
      .catch((error) => log.error({ err: error }, 'webhook delivery cleanup failed'));
  }, CLEANUP_INTERVAL_MS);
  cleanup.unref();

  let draining = false;
  const drainAndExit = (reason: string) => {
    if (draining) return;
    draining = true;
    // Not awaited: the drain ends in process.exit; a failure in it rejects unhandled, which exits
    // the worker (Node's default) for the primary to replace.
    void (async () => {
      log.info({ reason, sending: engine.sending }, 'delivery worker draining');
      clearInterval(heartbeat);
      clearInterval(cleanup);
      stopListening();
      await stopListeningForChanges();
      // Leave time to write progress and hand back leases before the primary's SIGKILL deadline.
      await engine
        .stop(Math.max(100, config.shutdownTimeoutMs - 2_000))
        .catch((error) => log.warn({ err: error }, 'delivery shutdown incomplete'));
      await sql`delete from delivery_workers where id = ${workerId}`.catch(() => {});
      await sender.close().catch(() => {});
      await sql.end({ timeout: 1 });
      process.exit(0);
    })();
  };
  onShutdownRequest(drainAndExit);

  log.info({ workerId, pid: process.pid }, 'delivery worker running');
  sendToPrimary({ type: 'ready', role: 'delivery' });
}
