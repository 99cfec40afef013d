import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Every metric this process exposes, in one registry per process. The primary adds its own
 * registry's values to what the workers send (src/metrics/cluster.ts), and prom-client's
 * aggregation sums counters, histograms and gauges over all processes.
 *
 * Labels are bounded: route patterns (never URLs), status codes, error codes, operation names.
 * Never an event id, org id or key.
 */
export const registry = new Registry();

// Sub-millisecond to 10 s: a cached auth is ~1 µs, a group-commit flush a few ms, a stalled
// flush up to FLUSH_TIMEOUT_MS (10 s by default).
export const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

let defaultsStarted = false;
/** prom-client's process metrics (CPU, memory, event loop lag, GC, handles); once per process. */
export function startDefaultMetrics(): void {
  if (defaultsStarted) return;
  defaultsStarted = true;
  collectDefaultMetrics({ register: registry });
  // Gauges named *_total break Prometheus naming rules (promtool check metrics flags them); the
  // same counts stay available per type in nodejs_active_handles / _requests / _resources.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
    registry.removeSingleMetric(name);
  }
}

export const eventIngestionLatency = new Histogram({
  name: 'event_ingestion_latency_seconds',
  help: 'Time from request start to the 202/200 answer on POST /v1/events and /v1/events/batch (includes the durable commit).',
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

export const authLatency = new Histogram({
  name: 'auth_latency_seconds',
  help: 'Time to authenticate an API key: a cache look-up on a hit, the full kid look-up and argon2id verification on a miss.',
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

export const rateLimitCheckLatency = new Histogram({
  name: 'rate_limit_check_latency_seconds',
  help: 'Time to charge an org\'s rate limit for one request.',
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

export const dbOperationLatency = new Histogram({
  name: 'db_operations_latency_seconds',
  help: 'Latency of successful database operations by operation (flush = one group-commit transaction: dedup claims, COPY, COMMIT).',
  labelNames: ['operation'],
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

const dbOperationErrors = new Counter({
  name: 'db_operation_errors_total',
  help: 'Database operations that failed or timed out, by operation (a failed flush answers 503 for its events).',
  labelNames: ['operation'],
  registers: [registry],
});

const flushRows = new Histogram({
  name: 'db_flush_rows',
  help: 'Events per group-commit flush (batch size, including duplicates resolved in the flush).',
  buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000],
  registers: [registry],
});

export const eventsIngested = new Counter({
  name: 'events_ingested_total',
  help: 'Events durably stored (committed); duplicates are not counted.',
  registers: [registry],
});

export const eventsDuplicate = new Counter({
  name: 'events_duplicate_total',
  help: 'Events answered as duplicates of an earlier dedup_id (nothing stored).',
  registers: [registry],
});

const cacheLookups = new Counter({
  name: 'cache_lookups_total',
  help: 'API key cache look-ups on authenticated requests, by result.',
  labelNames: ['result'],
  registers: [registry],
});

const validationErrors = new Counter({
  name: 'validation_errors_total',
  help: 'Rejected ingest requests and rejected batch items, by error code (invalid_json, validation_failed, payload_too_large, unsupported_media_type).',
  labelNames: ['type'],
  registers: [registry],
});

const webhookDeliveries = new Counter({
  name: 'webhook_deliveries_total',
  help: 'Webhook delivery attempts by outcome (succeeded, failed, dead, ...).',
  labelNames: ['status'],
  registers: [registry],
});

const webhookDeliveryLatency = new Histogram({
  name: 'webhook_delivery_latency_seconds',
  help: 'Duration of webhook delivery attempts (request sent to response or error).',
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

const httpRequests = new Counter({
  name: 'http_requests_total',
  help: 'HTTP responses by route pattern (e.g. "POST /v1/events", "not_found") and status code.',
  labelNames: ['route', 'status'],
  registers: [registry],
});

const httpDuration = new Histogram({
  name: 'http_request_duration_seconds',
  help: 'Time from request start to response by route pattern.',
  labelNames: ['route'],
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

let watchedQueue: { readonly queued: number } | null = null;

/** Read at scrape time; each HTTP worker has its own batcher queue, the scrape sums them. */
export const eventQueueSize = new Gauge({
  name: 'event_queue_size',
  help: 'Validated events waiting for a group-commit flush (summed over HTTP workers).',
  registers: [registry],
  collect() {
    this.set(watchedQueue === null ? 0 : watchedQueue.queued);
  },
});

type Inc = { inc(value?: number): void };
type Observe = { observe(value: number): void };

// Children are created once per label value and kept: per request there is no label object to build.
const cacheHit = cacheLookups.labels('hit');
const cacheMiss = cacheLookups.labels('miss');
const flushLatency = dbOperationLatency.labels('flush');
const flushErrors = dbOperationErrors.labels('flush');
// Present from the first scrape, so rate() works before the first event of each kind.
cacheHit.inc(0);
cacheMiss.inc(0);
flushErrors.inc(0);
eventsIngested.inc(0);
eventsDuplicate.inc(0);

function childCache<T>(make: (value: string) => T): (value: string) => T {
  const children = new Map<string, T>();
  return (value) => {
    let child = children.get(value);
    if (child === undefined) {
      child = make(value);
      children.set(value, child);
    }
    return child;
  };
}

const validationChild = childCache<Inc>((type) => validationErrors.labels(type));
const webhookChild = childCache<Inc>((status) => webhookDeliveries.labels(status));
const dbOperationChild = childCache<Observe>((operation) => dbOperationLatency.labels(operation));
const dbOperationErrorChild = childCache<Inc>((operation) => dbOperationErrors.labels(operation));
for (const status of ['succeeded', 'failed', 'dead']) webhookChild(status).inc(0);

/** Call with the seconds one rate-limit charge took (see docs/METRICS.md). */
export function observeRateLimitCheck(seconds: number): void {
  rateLimitCheckLatency.observe(seconds);
}

/** Wraps a rate-limit charge so its time is observed, including charges that throw 429. */
export function timedRateLimit<A extends unknown[]>(charge: (...args: A) => void): (...args: A) => void {
  return (...args: A) => {
    const started = performance.now();
    try {
      charge(...args);
    } finally {
      rateLimitCheckLatency.observe((performance.now() - started) / 1000);
    }
  };
}

/**
 * One webhook delivery attempt's outcome. Use a small fixed set of values (succeeded, failed,
 * dead, ...): never a URL, endpoint id or free text.
 */
export function countWebhookDelivery(status: string): void {
  webhookChild(status).inc();
}

/** Hooks for src/delivery/observer.ts (installed in every worker; only the delivery worker calls it). */
export const deliveryMetrics = {
  attempted(outcome: string, latencySeconds: number): void {
    webhookChild(outcome).inc();
    webhookDeliveryLatency.observe(latencySeconds);
  },
};

/** One database operation; `operation` is a fixed name such as "inbox_read" or "ack". */
export function observeDbOperation(operation: string, seconds: number, ok = true): void {
  if (ok) dbOperationChild(operation).observe(seconds);
  else dbOperationErrorChild(operation).inc();
}

/** `type` is an error code from API.md (validation_failed, invalid_json, ...). */
export function countValidationError(type: string, count = 1): void {
  validationChild(type).inc(count);
}

/** Hooks for src/auth/verifier.ts. */
export const verifierObserver = {
  cacheLookup(hit: boolean, seconds: number): void {
    if (hit) {
      cacheHit.inc();
      authLatency.observe(seconds);
    } else {
      cacheMiss.inc();
    }
  },
  verified(seconds: number): void {
    authLatency.observe(seconds);
  },
};

/** Hooks for src/ingest/batcher.ts. */
export const batcherObserver = {
  flushed(rows: number, seconds: number, ok: boolean, stored?: number): void {
    flushRows.observe(rows);
    if (!ok) {
      flushErrors.inc();
      return;
    }
    flushLatency.observe(seconds);
    if (stored !== undefined) {
      eventsIngested.inc(stored);
      if (rows > stored) eventsDuplicate.inc(rows - stored);
    }
  },
};

/** The batcher whose queue event_queue_size reports in this process. */
export function watchEventQueue(queue: { readonly queued: number }): void {
  watchedQueue = queue;
}

const INGEST_ROUTES = new Set(['POST /v1/events', 'POST /v1/events/batch']);
// Statuses of ingest requests refused for what they sent, and the code each one always carries.
const VALIDATION_STATUS_CODES: Record<number, string> = {
  400: 'invalid_json', 413: 'payload_too_large', 415: 'unsupported_media_type', 422: 'validation_failed',
};

interface RouteMetrics {
  ingest: boolean;
  duration: Observe;
  byStatus: Map<number, Inc>;
}

const routeMetrics = new Map<string, RouteMetrics>();

function metricsForRoute(route: string): RouteMetrics {
  let metrics = routeMetrics.get(route);
  if (metrics === undefined) {
    metrics = { ingest: INGEST_ROUTES.has(route), duration: httpDuration.labels(route), byStatus: new Map() };
    routeMetrics.set(route, metrics);
  }
  return metrics;
}

/** The response observer (src/http/respond.ts): one call per response. */
export function observeHttpResponse(route: string, status: number, seconds: number): void {
  const metrics = metricsForRoute(route);
  let counter = metrics.byStatus.get(status);
  if (counter === undefined) {
    counter = httpRequests.labels(route, String(status));
    metrics.byStatus.set(status, counter);
  }
  counter.inc();
  metrics.duration.observe(seconds);
  if (!metrics.ingest) return;
  if (status === 202 || status === 200) {
    eventIngestionLatency.observe(seconds);
  } else {
    const code = VALIDATION_STATUS_CODES[status];
    if (code !== undefined) validationChild(code).inc();
  }
}
