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

function withTimeout(check: DependencyCheck): Promise<CheckResult> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    check.run().catch((): CheckResult => 'down'),
    new Promise<CheckResult>((resolve) => { timer = setTimeout(() => resolve('down'), CHECK_TIMEOUT_MS); }),
  ]).finally(() => clearTimeout(timer));
}

const checkResult = { type: 'string', enum: ['ok', 'down', 'disabled'] };
const statusReport = (status: string[]) => ({
  type: 'object',
  required: ['status', 'version', 'uptime_s', 'checks'],
  properties: {
    status: { type: 'string', enum: status },
    version: { type: 'string', description: 'The server\'s version (package.json).' },
    uptime_s: { type: 'integer', minimum: 0, description: 'Seconds since the server started.' },
    checks: {
      type: 'object',
      required: ['postgres', 'redis'],
      properties: {
        postgres: { ...checkResult, enum: ['ok', 'down'] },
        redis: { ...checkResult, description: '`disabled` without REDIS_URL (single-node coordination).' },
        workers: { type: 'string', description: '`ok` when every worker role of the node is at its count; otherwise each role below it, as `<role> <ready>/<wanted>` (e.g. `http 1/2`), and the status is `degraded` with 503 while replacements start.' },
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
      description: 'Serving. `degraded` when an optional dependency (Redis) is down: the server still serves, each node with its share of the rate limits.',
      schema: named('Status', statusReport(['ok', 'degraded'])),
    },
    503: {
      description: 'A required dependency (Postgres) is down, or a worker role is below its count (`checks.workers`): `degraded`, with Retry-After. While the server shuts down, the usual error body.',
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
  return [{
    method: 'get', path: '/status', auth: 'public', doc: STATUS_DOC,
    async handle() {
      const results = await Promise.all(checks.map(withTimeout));
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
      return { status: requiredDown ? 503 : 200, body: JSON.stringify(body), headers: requiredDown ? { 'Retry-After': '5' } : undefined };
    },
  }];
}
