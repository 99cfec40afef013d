import { adminRoutes } from '../admin/routes.js';
import { HashPool } from '../auth/hash-pool.js';
import { ApiKeyVerifier } from '../auth/verifier.js';
import type { Config } from '../config.js';
import { openDatabase } from '../db/connect.js';
import { CopyPool } from '../db/copy-pool.js';
import { DeliveryWakePublisher } from '../delivery/wake.js';
import { wireTarget } from '../db/wire.js';
import { RequestTracker, registerRoutes } from '../http/router.js';
import { loadUws } from '../http/uws.js';
import { EventBatcher } from '../ingest/batcher.js';
import { eventsCommittedChannel, type EventsCommitted } from '../ingest/committed.js';
import { inboxRoutes } from '../inbox/routes.js';
import { ingestRoutes } from '../ingest/routes.js';
import { log } from '../log.js';
import { instrumentHttpWorker } from '../metrics/instrument.js';
import { timedRateLimit } from '../metrics/metrics.js';
import { metricsRoutes } from '../metrics/route.js';
import { statusRoutes } from '../ops/status.js';
import { startRateLimits } from '../ratelimit/setup.js';
import { webhookRoutes } from '../webhooks/routes.js';
import { ENV_DATABASE_URL, ENV_STARTED_AT } from './messages.js';
import { onShutdownRequest } from './shutdown-signals.js';

/**
 * One HTTP process: a uWS app on PORT (SO_REUSEPORT, so the kernel spreads connections over the
 * workers), its own key cache, hash pool, batcher and Postgres pool.
 */
export async function runHttpWorker(config: Config): Promise<void> {
  const uws = loadUws();
  // statement_timeout at half the flush timeout: a flush stalled in Postgres (e.g. COPY waiting on a
  // lock) is cancelled and rolled back by the server before the batcher gives up and answers 503.
  // Without it the abandoned transaction committed later: a 503 ("not stored") for stored events
  // (test/postgres-outage.test.ts). No request-path query should need longer either.
  const statementTimeoutMs = Math.floor(config.flushTimeoutMs / 2);
  const sql = openDatabase(process.env[ENV_DATABASE_URL]!, {
    max: config.flushConcurrency + 6, name: 'triggers-http', statementTimeoutMs,
  });
  // The batcher's COPYs (no dedup) go through our own connections: one socket write per flush.
  const copyPool = new CopyPool(wireTarget(process.env[ENV_DATABASE_URL]!, {
    application_name: 'triggers-ingest', statement_timeout: String(statementTimeoutMs),
  }), config.flushConcurrency, config.flushTimeoutMs * 2);
  const hashPool = new HashPool(1, config.authQueueLimit);
  const verifier = new ApiKeyVerifier(sql, hashPool, config.authCacheSize);
  await verifier.start();
  const batcher = new EventBatcher(sql, copyPool, config);
  const tracker = new RequestTracker();
  const rateLimits = await startRateLimits(config, sql);
  instrumentHttpWorker({ verifier, batcher });
  // Committed events and endpoint changes wake the delivery processes (src/delivery/wake.ts).
  const wakes = new DeliveryWakePublisher(config.redisUrl);
  eventsCommittedChannel.subscribe((message) => wakes.eventsCommitted((message as EventsCommitted).orgIds));

  const routes = [
    ...ingestRoutes({ sql, batcher, chargeRateLimit: timedRateLimit(rateLimits.limiter.charge) }),
    ...inboxRoutes(sql),
    ...metricsRoutes(config.metricsToken),
    ...webhookRoutes(sql, config, (orgId) => wakes.endpointsChanged(orgId)),
    ...adminRoutes(sql, { rateLimitPerSec: config.defaultRateLimitPerSec, burst: config.defaultBurst }),
    ...statusRoutes([
      { name: 'postgres', required: true, run: async () => (await sql`select 1`, 'ok') },
      { name: 'redis', required: false, run: rateLimits.redisCheck },
    ], Number(process.env[ENV_STARTED_AT]) || Date.now()),
  ];
  const app = uws.App();
  registerRoutes(app, routes, { verifier, adminToken: config.adminToken, tracker, afterAuth: rateLimits.limiter.afterAuth });

  const listenSocket = await new Promise<unknown>((resolve, reject) => {
    app.listen(config.host, config.port, (token) => (token ? resolve(token) : reject(new Error(`cannot listen on ${config.host}:${config.port}`))));
  });

  let stopping: Promise<void> | null = null;
  const drainAndExit = (reason: string) => {
    stopping ??= (async () => {
      log.info({ reason }, 'draining');
      tracker.draining = true;
      uws.us_listen_socket_close(listenSocket as never);
      const deadline = new Promise((resolve) => setTimeout(resolve, config.shutdownTimeoutMs).unref());
      await Promise.race([Promise.all([tracker.idle(), batcher.drained()]), deadline]);
      await verifier.stop();
      await rateLimits.stop();
      await wakes.stop();
      copyPool.close();
      await sql.end({ timeout: 2 });
      await hashPool.close();
      process.exit(0);
    })();
  };

  onShutdownRequest(drainAndExit);

  process.send?.({ type: 'ready', role: 'http' });
}
