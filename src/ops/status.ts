import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RouteSpec } from '../http/router.js';

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

/** GET /status (no auth), API.md §8. `startedAt` is the primary's start, so uptime is the server's. */
export function statusRoutes(checks: DependencyCheck[], startedAtMs: number): RouteSpec[] {
  return [{
    method: 'get', path: '/status', auth: 'public',
    async handle() {
      const results = await Promise.all(checks.map(withTimeout));
      const report: Record<string, CheckResult> = {};
      let degraded = false;
      let requiredDown = false;
      checks.forEach((check, i) => {
        report[check.name] = results[i]!;
        if (results[i] === 'down') {
          degraded = true;
          if (check.required) requiredDown = true;
        }
      });
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
