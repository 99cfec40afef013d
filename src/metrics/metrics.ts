import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { FastCounter, FastHistogram, type CounterSlot, type HistogramSlot } from './series.js';

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

const histogram = (name: string, help: string, buckets: readonly number[] = LATENCY_BUCKETS) => new FastHistogram(name, help, buckets, registry);
const counter = (name: string, help: string) => new FastCounter(name, help, registry);

const eventIngestionLatency = histogram('event_ingestion_latency_seconds',
  'Time from request start to the 202/200 answer on POST /v1/events and /v1/events/batch (includes the durable commit).').child();
const authLatency = histogram('auth_latency_seconds',
  'Time to authenticate an API key per request: a cache look-up on a hit, the wait for kid look-up and argon2id verification on a miss.').child();
const rateLimitCheckLatency = histogram('rate_limit_check_latency_seconds',
  'Time to charge an org\'s rate limit for one request.').child();
const dbOperationLatency = histogram('db_operations_latency_seconds',
  'Latency of successful database operations by operation (flush = one group-commit transaction: dedup claims, COPY, COMMIT).');
const dbOperationErrors = counter('db_operation_errors_total',
  'Database operations that failed or timed out, by operation (a failed flush answers 503 for its events).');
const flushRows = histogram('db_flush_rows',
  'Events per group-commit flush (batch size, including duplicates resolved in the flush).',
  [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000]).child();
const eventsIngested = counter('events_ingested_total', 'Events durably stored (committed); duplicates are not counted.').child();
const eventsDuplicate = counter('events_duplicate_total', 'Events answered as duplicates of an earlier dedup_id (nothing stored).').child();
const cacheLookups = counter('cache_lookups_total', 'API key cache look-ups on authenticated requests, by result.');
const validationErrors = counter('validation_errors_total',
  'Rejected ingest requests and rejected batch items, by error code (invalid_json, validation_failed, payload_too_large, unsupported_media_type).');
const webhookDeliveries = counter('webhook_deliveries_total', 'Webhook delivery attempts by outcome (succeeded, failed, dead).');
const webhookDeliveryLatency = histogram('webhook_delivery_latency_seconds',
  'Duration of webhook delivery attempts (request sent to response or error).').child();
// Ingest to first attempt: milliseconds when the endpoint keeps up, minutes for a backlog.
const webhookDeliveryLag = histogram('webhook_delivery_lag_seconds',
  'Time from an event\'s receipt (received_at) to the start of its first delivery attempt, per endpoint it goes to.',
  [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]).child();
let deliveriesInFlight = 0;
new Gauge({
  name: 'webhook_deliveries_in_flight',
  help: 'Webhook requests sent and not yet answered (summed over delivery processes).',
  registers: [registry],
  collect() {
    this.set(deliveriesInFlight);
  },
});
const httpRequests = counter('http_requests_total',
  'HTTP responses by route pattern (e.g. "POST /v1/events", "not_found") and status code.');
const httpDuration = histogram('http_request_duration_seconds', 'Time from request start to response by route pattern.');

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

// Series are created once per label value and kept: per request there is no label set to build.
const cacheHit = cacheLookups.child({ result: 'hit' });
const cacheMiss = cacheLookups.child({ result: 'miss' });
const flushLatency = dbOperationLatency.child({ operation: 'flush' });
const flushErrors = dbOperationErrors.child({ operation: 'flush' });

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

const validationChild = childCache<CounterSlot>((type) => validationErrors.child({ type }));
const webhookChild = childCache<CounterSlot>((status) => webhookDeliveries.child({ status }));
const dbOperationChild = childCache<HistogramSlot>((operation) => dbOperationLatency.child({ operation }));
const dbOperationErrorChild = childCache<CounterSlot>((operation) => dbOperationErrors.child({ operation }));
// Present from the first scrape, so dashboards and rate() work before the first event of each kind.
for (const status of ['succeeded', 'failed', 'dead']) webhookChild(status);

/** Call with the seconds one rate-limit charge took (see docs/METRICS.md). */
export function observeRateLimitCheck(seconds: number): void {
  rateLimitCheckLatency.observe(seconds);
}

/** Wraps a rate-limit charge so its time is observed, including charges that throw 429. */
export function timedRateLimit<C>(charge: (ctx: C, cost: number) => void): (ctx: C, cost: number) => void {
  return (ctx, cost) => {
    const started = performance.now();
    try {
      charge(ctx, cost);
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
  started(lagSeconds: number): void {
    webhookDeliveryLag.observe(lagSeconds);
  },
  attempted(outcome: string, latencySeconds: number): void {
    webhookChild(outcome).inc();
    webhookDeliveryLatency.observe(latencySeconds);
  },
  inFlight(count: number): void {
    deliveriesInFlight = count;
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
  duration: HistogramSlot;
  byStatus: Map<number, CounterSlot>;
}

const routeMetrics = new Map<string, RouteMetrics>();

function metricsForRoute(route: string): RouteMetrics {
  let metrics = routeMetrics.get(route);
  if (metrics === undefined) {
    metrics = { ingest: INGEST_ROUTES.has(route), duration: httpDuration.child({ route }), byStatus: new Map() };
    routeMetrics.set(route, metrics);
  }
  return metrics;
}

/** The response observer (src/http/respond.ts): one call per response. */
export function observeHttpResponse(route: string, status: number, seconds: number): void {
  const metrics = metricsForRoute(route);
  let counter = metrics.byStatus.get(status);
  if (counter === undefined) {
    counter = httpRequests.child({ route, status: String(status) });
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
