import { HashPool } from '../auth/hash-pool.js';
import { ApiKeyVerifier } from '../auth/verifier.js';
import type { Config } from '../config.js';
import { ClientCopy, type CopyWriter } from '../db/client-copy.js';
import { CITUS_SESSION_PARAMETERS, openDatabase, type Sql } from '../db/connect.js';
import { CopyPool } from '../db/copy-pool.js';
import { wireTarget } from '../db/wire.js';
import { EndpointOrgs } from '../delivery/endpoint-orgs.js';
import { EventTypeRegistry } from '../event-types/registry.js';
import { SchemaCheckPool } from '../event-types/schema-pool.js';
import { DeliveryWakePublisher } from '../delivery/wake.js';
import { GroupWaiters } from '../groups/waiters.js';
import { GroupWakeRelay } from '../groups/wake.js';
import { loadConsoleFiles } from '../console/files.js';
import { registerRoutes } from '../http/router.js';
import { RequestTracker } from '../http/tracker.js';
import type { TemplatedApp, Uws } from '../http/uws.js';
import { EventBatcher } from '../ingest/batcher.js';
import { log } from '../log.js';
import { watchEventQueue, watchRequestsInFlight } from '../metrics/metrics.js';
import { subscribeMetrics } from '../metrics/subscribe.js';
import { startRateLimits } from '../ratelimit/setup.js';
import { watchRoleHealth } from './role-health.js';
import { routeTable } from './route-table.js';

export interface HttpApp {
  app: TemplatedApp;
  /** Stops taking requests' work: answers in flight and queued events are finished first. */
  drain(deadlineMs: number): Promise<void>;
  /** Releases connections, pools and timers. */
  close(): Promise<void>;
  tracker: RequestTracker;
}

/**
 * An HTTP process's two ways to Postgres: the `postgres` pool, and the COPY writer of the
 * batcher's firehose flushes. On Citus both get CITUS_SESSION_PARAMETERS.
 */
export function openHttpDatabase(
  config: Config,
  databaseUrl: string,
  onCitus: boolean,
): { sql: Sql; copyPool: CopyWriter } {
  // statement_timeout at half the flush timeout: a flush stalled in Postgres (e.g. COPY waiting on a
  // lock) is cancelled and rolled back by the server before the batcher gives up and answers 503.
  // Otherwise the abandoned transaction could commit later: a 503 ("not stored") for stored
  // events (test/postgres-outage.test.ts). No request-path query should need longer either.
  const statementTimeoutMs = Math.floor(config.flushTimeoutMs / 2);
  const sql = openDatabase(databaseUrl, {
    max: config.flushConcurrency + 6,
    name: 'triggers-http',
    statementTimeoutMs,
    onCitus,
  });
  // The batcher's COPYs (no dedup) go through our own connections: one socket write per flush.
  // INGEST_COPY_CLIENT=postgres sends them through the pool above instead (src/db/client-copy.ts).
  const copyPool: CopyWriter =
    config.ingestCopyClient === 'postgres'
      ? new ClientCopy(sql)
      : new CopyPool(
          wireTarget(databaseUrl, {
            application_name: 'triggers-ingest',
            statement_timeout: String(statementTimeoutMs),
            ...(onCitus ? CITUS_SESSION_PARAMETERS : {}),
          }),
          config.flushConcurrency,
          config.flushTimeoutMs * 2,
        );
  return { sql, copyPool };
}

/**
 * Everything one HTTP process serves, without listening: the routes over a Postgres pool, the
 * key cache and hash pool, the batcher and the rate limiter. The HTTP worker listens with it;
 * tests drive it in their own process against a real Postgres (test/helpers/in-process.ts).
 */
export async function createHttpApp(
  uws: Uws,
  config: Config,
  databaseUrl: string,
  startedAt: number,
): Promise<HttpApp> {
  const { sql, copyPool } = openHttpDatabase(config, databaseUrl, config.onCitus);
  const hashPool = new HashPool(1, config.authQueueLimit);
  const verifier = new ApiKeyVerifier(sql, hashPool, config.authCacheSize);
  await verifier.start();
  const tracker = new RequestTracker();
  const rateLimits = await startRateLimits(config, sql);
  subscribeMetrics();
  watchRequestsInFlight(tracker);
  // Committed events of orgs with endpoints, and endpoint changes, wake the delivery processes
  // (src/delivery/wake.ts); a firehose org's flushes send nothing.
  const wakes = new DeliveryWakePublisher(config.redisUrl);
  const endpointOrgs = new EndpointOrgs(sql, (orgId) => wakes.eventsCommitted(orgId));
  await endpointOrgs.start();
  // The schemas events are checked against before the 202 (API.md §3b).
  const eventTypes = new EventTypeRegistry(sql, config.eventTypeCacheSize);
  await eventTypes.start();
  const schemaChecks = new SchemaCheckPool();
  // Long-poll receives of consumer groups wait here; commits here and in the node's other HTTP
  // processes wake them (src/groups/wake.ts).
  const groupWaiters: GroupWaiters = new GroupWaiters(
    { perOrg: config.groupWaitPerOrg, total: config.groupWaitTotal },
    (orgId, waiting) => groupWakes.interest(orgId, waiting),
  );
  const groupWakes = new GroupWakeRelay((orgIds) => groupWaiters.wake(orgIds));
  // After each flush that stored events: wake the delivery processes for orgs with endpoints and
  // the long polls of every org's groups.
  const batcher = new EventBatcher(sql, copyPool, config, (orgIds) => {
    for (const orgId of orgIds) if (endpointOrgs.mayHaveEndpoints(orgId)) wakes.eventsCommitted(orgId);
    groupWakes.committed(orgIds);
  });
  watchEventQueue(batcher, config.maxQueuedEvents);

  const routes = routeTable({
    sql,
    batcher,
    chargeRateLimit: rateLimits.limiter.charge,
    config,
    eventTypes,
    schemaChecks,
    endpointsChanged: (orgId) => {
      wakes.endpointsChanged(orgId);
      endpointOrgs
        .changedHere(orgId)
        .catch((error: Error) =>
          log.warn(
            { err: error },
            'could not announce an endpoint change; other processes learn it at their next reload',
          ),
        );
    },
    checks: [
      {
        name: 'postgres',
        required: true,
        run: async () => {
          await sql`select 1`;
          return 'ok' as const;
        },
      },
      { name: 'redis', required: false, run: rateLimits.redisCheck },
    ],
    roleHealth: watchRoleHealth(),
    startedAt,
    onCitus: config.onCitus,
    groupWaiters,
    draining: () => tracker.draining,
    consoleFiles: loadConsoleFiles(),
  });
  const app = uws.App();
  registerRoutes(app, routes, {
    verifier,
    adminToken: config.adminToken,
    tracker,
    afterAuth: rateLimits.limiter.afterAuth,
  });

  return {
    app,
    tracker,
    async drain(deadlineMs) {
      tracker.draining = true;
      groupWaiters.wakeAll();
      let late = false;
      const deadline = new Promise<void>((resolve) =>
        setTimeout(() => {
          late = true;
          resolve();
        }, deadlineMs).unref(),
      );
      await Promise.race([Promise.all([tracker.idle(), batcher.drained()]), deadline]);
      if (late)
        log.warn(
          { in_flight: tracker.inFlight, queued: batcher.queued, deadline_ms: deadlineMs },
          'drain deadline passed with work left',
        );
    },
    async close() {
      groupWakes.stop();
      await endpointOrgs.stop();
      await eventTypes.stop();
      await schemaChecks.close();
      await verifier.stop();
      await rateLimits.stop();
      await wakes.stop();
      copyPool.close();
      await sql.end({ timeout: 2 });
      await hashPool.close();
    },
  };
}
