import { adminRoutes } from '../admin/routes.js';
import { keyRoutes } from '../auth/routes.js';
import { consoleRoutes } from '../console/routes.js';
import type { ConsoleFiles } from '../console/files.js';
import { loadConfig, type Config } from '../config.js';
import type { Sql } from '../db/connect.js';
import type { DependencyCheck } from '../dependency-check.js';
import type { EventTypeRegistry } from '../event-types/registry.js';
import { eventTypeRoutes } from '../event-types/routes.js';
import type { SchemaCheckPool } from '../event-types/schema-pool.js';
import type { RouteSpec } from '../http/router.js';
import { groupRoutes } from '../groups/routes.js';
import { GroupWaiters } from '../groups/waiters.js';
import type { EventBatcher } from '../ingest/batcher.js';
import { ingestRoutes, type IngestDeps } from '../ingest/routes.js';
import { inboxRoutes } from '../inbox/routes.js';
import { eventListRoutes } from '../event-list/routes.js';
import { metricsRoutes } from '../metrics/route.js';
import { openApiRoutes } from '../ops/openapi.js';
import { statusRoutes, VERSION, type RoleHealth } from '../ops/status.js';
import { webhookRoutes } from '../webhooks/routes.js';
import { destinationRoutes } from '../destinations/routes.js';

export interface RouteTableDeps {
  sql: Sql;
  batcher: EventBatcher;
  chargeRateLimit: IngestDeps['chargeRateLimit'];
  config: Config;
  /** Event types of the orgs that have some, checked at ingest (src/event-types/registry.ts). */
  eventTypes: EventTypeRegistry;
  /** Compiles schemas being registered off the event loop (src/event-types/schema-pool.ts). */
  schemaChecks: SchemaCheckPool;
  endpointsChanged(orgId: string): void;
  checks: DependencyCheck[];
  /** The primary's word on its worker roles, for /status; absent without a primary. */
  roleHealth?: RoleHealth;
  startedAt: number;
  /** The database is a Citus coordinator (src/db/citus.ts): no generic plans (inbox/queries.ts). */
  onCitus?: boolean;
  /** Long-poll receives waiting in this process (src/groups/waiters.ts); none are woken without. */
  groupWaiters?: GroupWaiters;
  /** The process is draining (long polls answer at once). */
  draining?(): boolean;
  /** The built console (src/console/files.ts); null or absent: GET /console says how to build it. */
  consoleFiles?: ConsoleFiles | null;
}

/** Every route one HTTP process serves, GET /openapi.json (which describes all of them) last. */
export function routeTable(deps: RouteTableDeps): RouteSpec[] {
  const { sql, config } = deps;
  const routes = [
    ...keyRoutes(sql),
    ...ingestRoutes({ sql, batcher: deps.batcher, chargeRateLimit: deps.chargeRateLimit, eventTypes: deps.eventTypes }),
    ...eventTypeRoutes(
      sql,
      {
        maxPerOrg: config.eventTypesMaxPerOrg,
        compileProblems: (schemaJson) => deps.schemaChecks.problems(schemaJson),
      },
      (orgId) => deps.eventTypes.changedHere(orgId),
    ),
    ...inboxRoutes(sql, { genericPlans: !deps.onCitus }),
    ...eventListRoutes(sql, { retentionDays: config.retentionDays }),
    ...groupRoutes(sql, {
      waiters: deps.groupWaiters ?? new GroupWaiters({ perOrg: config.groupWaitPerOrg, total: config.groupWaitTotal }),
      draining: deps.draining ?? (() => false),
    }),
    ...webhookRoutes(sql, config, deps.endpointsChanged),
    ...destinationRoutes(sql, config, deps.endpointsChanged),
    ...adminRoutes(sql, { rateLimitPerSec: config.defaultRateLimitPerSec, burst: config.defaultBurst }),
    ...statusRoutes(deps.checks, deps.startedAt, deps.roleHealth),
    ...metricsRoutes(config.metricsToken),
    ...consoleRoutes(deps.consoleFiles ?? null),
  ];
  return [...routes, ...openApiRoutes(routes, VERSION)];
}

/**
 * The route table without a server, for scripts/openapi.ts and tests that read the table. A route
 * factory only captures its dependencies and uses none of them until a request comes, so stand-ins
 * that throw when touched are enough here; the document does not depend on configuration
 * (defaults here).
 */
export function routeTableWithoutServer(): RouteSpec[] {
  const unused = new Proxy(
    {},
    {
      get: () => {
        throw new Error('routeTableWithoutServer: a route was called');
      },
    },
  );
  return routeTable({
    sql: unused as Sql,
    batcher: unused as EventBatcher,
    eventTypes: unused as EventTypeRegistry,
    schemaChecks: unused as SchemaCheckPool,
    chargeRateLimit: () => {},
    config: loadConfig({}),
    endpointsChanged: () => {},
    checks: [],
    startedAt: 0,
  });
}
