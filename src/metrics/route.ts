import { createHash, timingSafeEqual } from 'node:crypto';
import { ApiError, unavailable } from '../errors.js';
import type { RouteSpec } from '../http/router.js';
import { scrapeCluster } from './cluster.js';

const PROMETHEUS_TEXT = { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' };

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/**
 * GET /metrics: Prometheus text, aggregated over every process of this node. Public unless
 * METRICS_TOKEN is set; then `Authorization: Bearer <METRICS_TOKEN>` is required (401 otherwise,
 * compared in constant time).
 */
export function metricsRoutes(metricsToken: string | null): RouteSpec[] {
  const tokenDigest = metricsToken === null ? null : digest(metricsToken);
  return [{
    method: 'get', path: '/metrics', auth: 'public',
    async handle(ctx) {
      if (tokenDigest !== null) {
        const auth = ctx.authorization;
        if (!auth.toLowerCase().startsWith('bearer ') || !timingSafeEqual(digest(auth.slice(7).trim()), tokenDigest)) {
          throw new ApiError('unauthorized', 'Missing or invalid metrics token.');
        }
      }
      const text = await scrapeCluster();
      if (text === null) throw unavailable('Metrics are unavailable: the primary process did not answer.', 1);
      return { status: 200, body: text, headers: PROMETHEUS_TEXT };
    },
  }];
}
