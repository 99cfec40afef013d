import { keyCacheLookupChannel, keyVerifiedChannel, type KeyCacheLookup, type KeyVerified } from '../auth/channels.js';
import {
  attemptFinishedChannel,
  firstAttemptStartedChannel,
  type AttemptFinished,
  type FirstAttemptStarted,
} from '../delivery/channels.js';
import { UNAVAILABLE_CAUSES, type UnavailableCause } from '../errors.js';
import {
  responseSentChannel,
  unavailableSentChannel,
  type ResponseSent,
  type UnavailableSent,
} from '../http/channels.js';
import { inboxQueryChannel, type InboxOperation, type InboxQueryFinished } from '../inbox/channels.js';
import {
  batchItemRejectedChannel,
  flushFinishedChannel,
  rateLimitChargedChannel,
  type BatchItemRejected,
  type FlushFinished,
  type RateLimitCharged,
} from '../ingest/channels.js';
import {
  authLatency,
  cacheLookups,
  dbOperationErrors,
  dbOperationLatency,
  eventIngestionLatency,
  eventsDuplicate,
  eventsIngested,
  flushRows,
  httpDuration,
  httpRequests,
  httpUnavailable,
  rateLimitCheckLatency,
  validationErrors,
  webhookDeliveries,
  webhookDeliveryLag,
  webhookDeliveryLatency,
} from './metrics.js';
import type { CounterSlot, HistogramSlot } from './series.js';

/*
 * How what the domains publish (their channels.ts) moves the metrics of ./metrics.ts. Handlers run
 * synchronously inside `publish`, several on every request: each is a few map look-ups and
 * additions. Series are created once per label value and kept, so no label set is built per call.
 */

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

/* ---------- database operations ---------- */

interface OperationSeries {
  latency: HistogramSlot;
  errors: CounterSlot;
}
function operationSeries(operation: string): OperationSeries {
  return { latency: dbOperationLatency.child({ operation }), errors: dbOperationErrors.child({ operation }) };
}
// Present from the first scrape, so dashboards and rate() work before the first operation of each kind.
const flush = operationSeries('flush');
const inboxOperations: Record<InboxOperation, OperationSeries> = {
  inbox_read: operationSeries('inbox_read'),
  ack: operationSeries('ack'),
  group_receive: operationSeries('group_receive'),
  group_ack: operationSeries('group_ack'),
  group_change: operationSeries('group_change'),
};

function onFlushFinished(message: unknown): void {
  const { rows, seconds, ok, stored } = message as FlushFinished;
  flushRows.observe(rows);
  if (!ok) {
    flush.errors.inc();
    return;
  }
  flush.latency.observe(seconds);
  eventsIngested.inc(stored);
  if (rows > stored) eventsDuplicate.inc(rows - stored);
}

function onInboxQuery(message: unknown): void {
  const { operation, seconds, ok } = message as InboxQueryFinished;
  const series = inboxOperations[operation];
  if (ok) series.latency.observe(seconds);
  else series.errors.inc();
}

/* ---------- requests ---------- */

const INGEST_ROUTES = new Set(['POST /v1/events', 'POST /v1/events/batch']);
// Statuses of ingest requests refused for what they sent, and the code each one always carries.
// Most are refused by the HTTP layer before the ingest route runs, so the answer's status is
// where every refusal shows; refused items inside a 200 batch come on their own channel.
const VALIDATION_STATUS_CODES: Record<number, string> = {
  400: 'invalid_json',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  422: 'validation_failed',
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

function onResponseSent(message: unknown): void {
  const { route, status, seconds } = message as ResponseSent;
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

// Every cause from the first scrape: rate() and alerts work before the first 503 of each kind.
const unavailableByCause = Object.fromEntries(
  UNAVAILABLE_CAUSES.map((cause) => [cause, httpUnavailable.child({ cause })]),
) as Record<UnavailableCause, CounterSlot>;

function onUnavailableSent(message: unknown): void {
  unavailableByCause[(message as UnavailableSent).cause].inc();
}

function onBatchItemRejected(message: unknown): void {
  validationChild((message as BatchItemRejected).code).inc();
}

function onRateLimitCharged(message: unknown): void {
  rateLimitCheckLatency.observe((message as RateLimitCharged).seconds);
}

const cacheHit = cacheLookups.child({ result: 'hit' });
const cacheMiss = cacheLookups.child({ result: 'miss' });

function onKeyCacheLookup(message: unknown): void {
  const { hit, seconds } = message as KeyCacheLookup;
  if (hit) {
    cacheHit.inc();
    authLatency.observe(seconds);
  } else {
    // A miss is timed as a whole by the verification that follows (onKeyVerified).
    cacheMiss.inc();
  }
}

function onKeyVerified(message: unknown): void {
  authLatency.observe((message as KeyVerified).seconds);
}

/* ---------- webhook delivery ---------- */

const attemptOutcomes: Record<AttemptFinished['outcome'], CounterSlot> = {
  succeeded: webhookDeliveries.child({ status: 'succeeded' }),
  failed: webhookDeliveries.child({ status: 'failed' }),
  dead: webhookDeliveries.child({ status: 'dead' }),
};

function onAttemptFinished(message: unknown): void {
  const { outcome, seconds } = message as AttemptFinished;
  attemptOutcomes[outcome].inc();
  webhookDeliveryLatency.observe(seconds);
}

function onFirstAttemptStarted(message: unknown): void {
  webhookDeliveryLag.observe((message as FirstAttemptStarted).lagSeconds);
}

let subscribed = false;

/**
 * Subscribes this process's metrics to every domain's channels; the composition roots
 * (src/cluster/) call it once per process. A role publishes only on its own channels, so the
 * rest cost nothing there. Later calls do nothing: one subscription per channel, or events
 * would count twice (tests build several HTTP apps in one process).
 */
export function subscribeMetrics(): void {
  if (subscribed) return;
  subscribed = true;
  responseSentChannel.subscribe(onResponseSent);
  unavailableSentChannel.subscribe(onUnavailableSent);
  keyCacheLookupChannel.subscribe(onKeyCacheLookup);
  keyVerifiedChannel.subscribe(onKeyVerified);
  rateLimitChargedChannel.subscribe(onRateLimitCharged);
  batchItemRejectedChannel.subscribe(onBatchItemRejected);
  flushFinishedChannel.subscribe(onFlushFinished);
  inboxQueryChannel.subscribe(onInboxQuery);
  firstAttemptStartedChannel.subscribe(onFirstAttemptStarted);
  attemptFinishedChannel.subscribe(onAttemptFinished);
}
