import { createHash, timingSafeEqual } from 'node:crypto';
import { ApiError, unavailable } from '../errors.js';
import type { RouteSpec } from '../http/router.js';
import type { RouteDoc } from '../openapi/operation.js';
import { scrapeCluster } from './cluster.js';

const PROMETHEUS_TEXT = { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' };

const METRICS_DOC: RouteDoc = {
  operationId: 'getMetrics',
  summary: 'Prometheus metrics',
  description:
    'Prometheus text format, aggregated over every process of this node (docs/METRICS.md). Public unless METRICS_TOKEN is set.',
  tag: 'Operations',
  security: [{}, { MetricsToken: [] }],
  responses: {
    200: { description: 'The metrics.', mediaType: 'text/plain', schema: { type: 'string' } },
  },
  errors: {
    401: '`unauthorized`: METRICS_TOKEN is set and the request does not carry it.',
    503: '`unavailable`: the primary process did not answer in time, or the server is shutting down.',
  },
};

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
  return [
    {
      method: 'get',
      path: '/metrics',
      auth: 'public',
      doc: METRICS_DOC,
      async handle(ctx) {
        if (tokenDigest !== null) {
          const auth = ctx.authorization;
          if (
            !auth.toLowerCase().startsWith('bearer ') ||
            !timingSafeEqual(digest(auth.slice(7).trim()), tokenDigest)
          ) {
            throw new ApiError('unauthorized', 'Missing or invalid metrics token.');
          }
        }
        const text = await scrapeCluster();
        if (text === null)
          throw unavailable('Metrics are unavailable: the primary process did not answer.', 1, 'metrics_timeout');
        return { status: 200, body: text, headers: PROMETHEUS_TEXT };
      },
    },
  ];
}
