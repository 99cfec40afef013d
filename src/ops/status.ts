import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RouteSpec } from '../http/router.js';
import { errorResponseSchema } from '../openapi/components.js';
import type { RouteDoc } from '../openapi/operation.js';
import { named } from '../openapi/schema.js';

export type CheckResult = 'ok' | 'down' | 'disabled';
/** A dependency check: 'down' for a required one makes the whole status degraded (503). */
export interface DependencyCheck {
  name: string;
  required: boolean;
  run(): Promise<CheckResult>;
}

export const VERSION: string = JSON.parse(
  fs.readFileSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../package.json'), 'utf8'),
).version;

const CHECK_TIMEOUT_MS = 2000;
// A result this young answers /status without probing again.
export const PROBE_FRESH_MS = 1000;
// A probe still unsettled after this long is given up on, and the next request may start another:
// a lost answer cannot leave /status on "down" for good, and a stall still costs one probe per 30 s.
const PROBE_ABANDON_MS = 30_000;

/**
 * One dependency's probe, shared by every /status request of this process: at most one run in
 * flight, and its result reused for PROBE_FRESH_MS.
 *
 * /status needs no credentials. When each request ran its own `select 1`, a request that timed out
 * after 2 s left its query queued on the shared pool; while Postgres stalled, a flood of /status
 * piled one query per request (100 for 100, measured) into the queue where the dedup flush, the
 * inbox and key look-ups wait, without bound, and once Postgres answered again they all ran first
 * (test/status-flood.test.ts). Sharing one
 * probe caps that at one query per process, answers a flood from memory, and keeps the probe on
 * the same pool the requests use, so "ok" still means the pool reaches Postgres (a connection of
 * its own would say "ok" while the pool was stuck, and cost a connection per process).
 */
export class SharedProbe {
  private inFlight: Promise<CheckResult> | null = null;
  private startedAt = 0;
  private last: CheckResult | null = null;
  private lastAt = 0;

  constructor(
    private readonly check: DependencyCheck,
    private readonly now: () => number = Date.now,
  ) {}

  /** The fresh result, else the running probe's, else a new probe's; 'down' after CHECK_TIMEOUT_MS. */
  result(): Promise<CheckResult> {
    const now = this.now();
    if (this.last !== null && now - this.lastAt < PROBE_FRESH_MS) return Promise.resolve(this.last);
    if (this.inFlight === null || now - this.startedAt > PROBE_ABANDON_MS) this.inFlight = this.probe(now);
    return withTimeout(this.inFlight);
  }

  private probe(now: number): Promise<CheckResult> {
    this.startedAt = now;
    const probe: Promise<CheckResult> = this.check
      .run()
      .catch((): CheckResult => 'down')
      .then((result) => {
        if (this.inFlight === probe) {
          this.inFlight = null;
          this.last = result;
          this.lastAt = this.now();
        }
        return result;
      });
    return probe;
  }
}

function withTimeout(result: Promise<CheckResult>): Promise<CheckResult> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    result,
    new Promise<CheckResult>((resolve) => {
      timer = setTimeout(() => resolve('down'), CHECK_TIMEOUT_MS);
    }),
  ]).finally(() => clearTimeout(timer));
}

const checkResult = { type: 'string', enum: ['ok', 'down', 'disabled'] };
const statusReport = (status: string[]) => ({
  type: 'object',
  required: ['status', 'version', 'uptime_s', 'checks'],
  properties: {
    status: { type: 'string', enum: status },
    version: { type: 'string', description: "The server's version (package.json)." },
    uptime_s: { type: 'integer', minimum: 0, description: 'Seconds since the server started.' },
    checks: {
      type: 'object',
      required: ['postgres', 'redis'],
      properties: {
        postgres: { ...checkResult, enum: ['ok', 'down'] },
        redis: { ...checkResult, description: '`disabled` without REDIS_URL (single-node coordination).' },
        workers: {
          type: 'string',
          description:
            '`ok` when every worker role of the node is at its count; otherwise each role below it, as `<role> <ready>/<wanted>` (e.g. `http 1/2`), and the status is `degraded` with 503 while replacements start.',
        },
      },
    },
  },
});

export const STATUS_DOC: RouteDoc = {
  operationId: 'getStatus',
  summary: 'Health of the server and its dependencies',
  tag: 'Operations',
  responses: {
    200: {
      description:
        'Serving. `degraded` when an optional dependency (Redis) is down: the server still serves, each node with its share of the rate limits.',
      schema: named('Status', statusReport(['ok', 'degraded'])),
    },
    503: {
      description:
        'A required dependency (Postgres) is down, or a worker role is below its count (`checks.workers`): `degraded`, with Retry-After. While the server shuts down, the usual error body.',
      schema: { oneOf: [named('StatusDegraded', statusReport(['degraded'])), errorResponseSchema(503)] },
    },
  },
};

/**
 * The primary's word on its workers (src/cluster/role-health.ts): 'ok', or each role below its
 * count, e.g. "http 1/2". Anything but 'ok' is degraded, 503: the node is short of processes.
 */
export type RoleHealth = () => string;

/** GET /status (no auth), API.md §8. `startedAt` is the primary's start, so uptime is the server's. */
export function statusRoutes(checks: DependencyCheck[], startedAtMs: number, roleHealth?: RoleHealth): RouteSpec[] {
  const probes = checks.map((check) => new SharedProbe(check));
  return [
    {
      method: 'get',
      path: '/status',
      auth: 'public',
      doc: STATUS_DOC,
      async handle() {
        const results = await Promise.all(probes.map((probe) => probe.result()));
        const report: Record<string, string> = {};
        let degraded = false;
        let requiredDown = false;
        checks.forEach((check, i) => {
          report[check.name] = results[i]!;
          if (results[i] === 'down') {
            degraded = true;
            if (check.required) requiredDown = true;
          }
        });
        const workers = roleHealth?.();
        if (workers !== undefined) {
          report.workers = workers;
          if (workers !== 'ok') degraded = requiredDown = true;
        }
        const body = {
          status: degraded ? 'degraded' : 'ok',
          version: VERSION,
          uptime_s: Math.floor((Date.now() - startedAtMs) / 1000),
          checks: report,
        };
        // An optional dependency down (Redis) degrades but still serves: 200. A required one: 503.
        return requiredDown
          ? {
              status: 503,
              body: JSON.stringify(body),
              headers: { 'Retry-After': '5' },
              unavailableCause: 'dependency_down',
            }
          : { status: 200, body: JSON.stringify(body) };
      },
    },
  ];
}
