import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { FastCounter, FastHistogram } from './series.js';

/**
 * Every metric this process exposes, in one registry per process. The primary adds its own
 * registry's values to what the workers send (src/metrics/cluster.ts), and prom-client's
 * aggregation sums counters, histograms and gauges over all processes. What moves them is in
 * ./subscribe.ts. (The database-wide gauges are the primary's alone: ./delivery-backlog.ts.)
 *
 * Labels are bounded: route patterns (never URLs), status codes, error codes, operation names.
 * Never an event id, org id or key.
 */
export const registry = new Registry();

// Sub-millisecond to 10 s: a cached auth is ~1 µs, a group-commit flush a few ms, a stalled
// flush up to FLUSH_TIMEOUT_MS (10 s by default).
const LATENCY_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

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

const histogram = (name: string, help: string, buckets: readonly number[] = LATENCY_BUCKETS) =>
  new FastHistogram(name, help, buckets, registry);
const counter = (name: string, help: string) => new FastCounter(name, help, registry);

export const eventIngestionLatency = histogram(
  'event_ingestion_latency_seconds',
  'Time from request start to the 202/200 answer on POST /v1/events and /v1/events/batch (includes the durable commit).',
).child();
export const authLatency = histogram(
  'auth_latency_seconds',
  'Time to authenticate an API key per request: a cache look-up on a hit, the wait for kid look-up and argon2id verification on a miss.',
).child();
export const rateLimitCheckLatency = histogram(
  'rate_limit_check_latency_seconds',
  "Time to charge an org's rate limit for one ingest request (including charges refused with 429).",
).child();
export const dbOperationLatency = histogram(
  'db_operations_latency_seconds',
  'Latency of successful database operations by operation (flush = one group-commit transaction: dedup claims, COPY, COMMIT; inbox_read = one GET /v1/inbox page; ack = one acknowledgement UPDATE; group_receive, group_ack, group_change = consumer group operations).',
);
export const dbOperationErrors = counter(
  'db_operation_errors_total',
  'Database operations that failed or timed out, by operation (a failed flush answers 503 for its events).',
);
export const flushRows = histogram(
  'db_flush_rows',
  'Events per group-commit flush (batch size, including duplicates resolved in the flush).',
  [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000],
).child();
export const eventsIngested = counter(
  'events_ingested_total',
  'Events durably stored (committed); duplicates are not counted.',
).child();
export const eventsDuplicate = counter(
  'events_duplicate_total',
  'Events answered as duplicates of an earlier dedup_id (nothing stored).',
).child();
export const cacheLookups = counter(
  'cache_lookups_total',
  'API key cache look-ups on authenticated requests, by result.',
);
export const validationErrors = counter(
  'validation_errors_total',
  'Rejected ingest requests and rejected batch items, by error code (invalid_json, validation_failed, payload_too_large, unsupported_media_type).',
);
export const webhookDeliveries = counter(
  'webhook_deliveries_total',
  'Webhook delivery attempts by outcome (succeeded, failed, dead).',
);
export const webhookDeliveryLatency = histogram(
  'webhook_delivery_latency_seconds',
  'Duration of webhook delivery attempts (request sent to response or error).',
).child();
// Ingest to first attempt: milliseconds when the endpoint keeps up, minutes for a backlog.
export const webhookDeliveryLag = histogram(
  'webhook_delivery_lag_seconds',
  "Time from an event's receipt (received_at) to the start of its first delivery attempt, per endpoint it goes to.",
  [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
).child();
export const httpRequests = counter(
  'http_requests_total',
  'HTTP responses by route pattern (e.g. "POST /v1/events", "not_found") and status code.',
);
export const httpDuration = histogram(
  'http_request_duration_seconds',
  'Time from request start to response by route pattern.',
);
export const httpUnavailable = counter(
  'http_unavailable_total',
  '503 answers by cause (overloaded, auth_overloaded, storage, flush_timeout, shutting_down, metrics_timeout, dependency_down, other); each is also in http_requests_total.',
);

/*
 * Gauges of a state that some object holds anyway: read at scrape time, so keeping them costs
 * nothing per request or per send. The composition roots say which object (src/cluster/).
 */

let watchedQueue: { readonly queued: number } | null = null;
let queueLimit = 0;
let watchedDeliveries: { readonly sending: number } | null = null;
let watchedRequests: { readonly inFlight: number } | null = null;

new Gauge({
  name: 'event_queue_size',
  help: 'Validated events waiting for a group-commit flush (summed over HTTP workers).',
  registers: [registry],
  collect() {
    this.set(watchedQueue === null ? 0 : watchedQueue.queued);
  },
});

new Gauge({
  name: 'webhook_deliveries_in_flight',
  help: 'Webhook requests sent and not yet answered (summed over delivery processes).',
  registers: [registry],
  collect() {
    this.set(watchedDeliveries === null ? 0 : watchedDeliveries.sending);
  },
});

new Gauge({
  name: 'event_queue_limit',
  help: 'Events an HTTP worker may hold waiting for a flush before it answers 503 (MAX_QUEUED_EVENTS), summed over HTTP workers like event_queue_size.',
  registers: [registry],
  collect() {
    this.set(queueLimit);
  },
});

new Gauge({
  name: 'http_requests_in_flight',
  help: 'HTTP requests begun and not yet ended (answered, or the client gone), summed over HTTP workers; a drain waits for 0.',
  registers: [registry],
  collect() {
    this.set(watchedRequests === null ? 0 : watchedRequests.inFlight);
  },
});

/** The request tracker whose count http_requests_in_flight reports in this process. */
export function watchRequestsInFlight(tracker: { readonly inFlight: number }): void {
  watchedRequests = tracker;
}

/**
 * The batcher whose queue event_queue_size reports in this process (each HTTP worker has its
 * own), and the limit it refuses at (MAX_QUEUED_EVENTS), for event_queue_limit.
 */
export function watchEventQueue(queue: { readonly queued: number }, limit: number): void {
  watchedQueue = queue;
  queueLimit = limit;
}

/** The delivery engine whose sends in flight webhook_deliveries_in_flight reports in this process. */
export function watchDeliveriesInFlight(engine: { readonly sending: number }): void {
  watchedDeliveries = engine;
}

/**
 * Replacements the primary started for workers that died, per role (http, delivery, and postgres
 * for the embedded Postgres): only the primary counts, its registry joins the cluster's metrics.
 * A rising rate is a crash loop (src/cluster/crash-policy.ts).
 */
export const workerRestarts = new Counter({
  name: 'worker_restarts_total',
  help: 'Worker processes (and the embedded Postgres) the primary started again after they died, by role.',
  labelNames: ['role'],
  registers: [registry],
});
