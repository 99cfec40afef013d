import { Gauge } from 'prom-client';
import type { Sql } from '../db/connect.js';
import { RECEIVED_SLACK_MS } from '../delivery/event-reader.js';
import { log } from '../log.js';
import { registry } from './metrics.js';

/**
 * Webhook gauges about the whole database, not about one process: endpoints disabled, and how
 * long the oldest delivery has been waiting. Only the primary registers them (watchDeliveryBacklog),
 * so the cluster aggregation never adds up copies from several processes of a node; aggregator
 * 'max' says so to prom-client as well. Every node reports the same numbers: take max() over
 * instances, never sum() (docs/METRICS.md).
 *
 * Read at scrape time, at most every REFRESH_MS (scrapes in between get the last reading), so a
 * server nobody scrapes never runs the queries. A reading that fails drops the series until the
 * next one succeeds: a gap, not a stale number.
 */
const REFRESH_MS = 5_000;
// The scrape waits this long for a fresh reading, then answers with the previous one.
const SCRAPE_WAIT_MS = 1_000;
const STATEMENT_TIMEOUT_MS = 5_000;
// What a PATCH {"enabled": false} writes (src/webhooks/service.ts); the server's own disabling
// (410 Gone, failing for WEBHOOK_DISABLE_AFTER_HOURS) writes a sentence with a time in it.
const DISABLED_BY_REQUEST = 'Disabled by a PATCH request.';

export type EndpointHealth = 'ok' | 'failing';

export interface DeliveryBacklog {
  disabledByRequest: number;
  disabledByServer: number;
  /** Oldest event's received_at (ms) per kind of waiting delivery and endpoint health; null when none waits. */
  oldestUnsentMs: Record<EndpointHealth, number | null>;
  oldestRetryingMs: Record<EndpointHealth, number | null>;
}

/**
 * The reading. A waiting delivery is one an enabled endpoint is owed and has not had yet:
 * - unsent: an event of the endpoint's org after its persisted stream cursor (received since
 *   deliver_from). The cursor is the last event before the first one not yet attempted
 *   (src/delivery/stream.ts), written within about a second, and it passes events the endpoint
 *   does not subscribe to just as fast while a delivery process owns the endpoint; with no
 *   owner, nothing moves and the age grows, which is the point.
 * - retrying: a delivery row due for another attempt (status failed, or pending: queued by
 *   POST …/recover).
 * Its age is counted from the event's receipt. Endpoints are split by health: failing once an
 * attempt failed and no later one succeeded (failing_since), so a broken receiver is told apart
 * from a stalled server.
 *
 * Cost: per enabled endpoint, one index probe on each of the two partial indexes the streams read
 * (events_unacked, events_acked_by_org_seq) in each partition from an hour before its cursor's
 * event to now (usually one or two), and two on webhook_deliveries_open (a delivery id is a
 * UUIDv7 of its event's time: the first is the oldest). Measured here: 1 000 endpoints 33 ms,
 * 5 000 endpoints 200 ms a reading, with 39 partitions and one org 300 000 events behind. On Citus every join is on org_id, the distribution column, so the
 * statement runs on each shard as it is.
 */
export async function readDeliveryBacklog(sql: Sql): Promise<DeliveryBacklog> {
  return sql.begin(async (tx) => {
    // A custom plan for every reading: a Citus coordinator cannot run a generic plan of these
    // statements (the primary's pool is opened without CITUS_SESSION_PARAMETERS, src/db/connect.ts).
    // No sorts: with them the planner reads every event of an org in the window and sorts them,
    // chosen on the average org's few rows; without, each probe walks the seq index from the
    // cursor and stops at one row. Measured here (Postgres 18, 39 partitions, one org 300 000
    // events behind): 2 000 endpoints read in 820 ms with sorts, 40 ms without.
    await tx`select set_config('statement_timeout', ${String(STATEMENT_TIMEOUT_MS)}, true), set_config('plan_cache_mode', 'force_custom_plan', true), set_config('enable_sort', 'off', true)`;
    const [disabled] = await tx`
      select count(*) filter (where disabled_reason = ${DISABLED_BY_REQUEST})::int as by_request,
             count(*) filter (where disabled_reason is distinct from ${DISABLED_BY_REQUEST})::int as by_server
      from webhook_endpoints where not enabled`;
    // Events after a cursor were received at most RECEIVED_SLACK_MS before the cursor's event (the
    // streams' own bound, src/delivery/event-reader.ts) and not in the future: with both bounds a
    // probe reads the partitions of the last day or so, not every retained and future one.
    const receivedBefore = new Date(Date.now() + RECEIVED_SLACK_MS);
    const waiting = await tx`
      select e.failing_since is not null as failing, min(unsent.received_at) as oldest_unsent, min(retrying.event_received_at) as oldest_retrying
      from webhook_endpoints e
      cross join lateral (
        select greatest(e.deliver_from, case when substr(e.cursor_id::text, 15, 1) = '7'
          then to_timestamp((('x' || substr(replace(e.cursor_id::text, '-', ''), 1, 12))::bit(48)::bigint - ${RECEIVED_SLACK_MS}) / 1000.0)
          else e.deliver_from end) as received_from
      ) bounds
      left join lateral (
        (select ev.received_at from events ev
         where ev.org_id = e.org_id and ev.acked_at is null and ev.seq > e.cursor_seq and ev.received_at >= bounds.received_from and ev.received_at < ${receivedBefore}
         order by ev.seq limit 1)
        union all
        (select ev.received_at from events ev
         where ev.org_id = e.org_id and ev.acked_at is not null and ev.seq > e.cursor_seq and ev.received_at >= bounds.received_from and ev.received_at < ${receivedBefore}
         order by ev.seq limit 1)
      ) unsent on true
      left join lateral (
        (select d.event_received_at from webhook_deliveries d
         where d.org_id = e.org_id and d.endpoint_id = e.id and d.status = 'failed'
         order by d.id limit 1)
        union all
        (select d.event_received_at from webhook_deliveries d
         where d.org_id = e.org_id and d.endpoint_id = e.id and d.status = 'pending'
         order by d.id limit 1)
      ) retrying on true
      where e.enabled
      group by 1`;
    const backlog: DeliveryBacklog = {
      disabledByRequest: disabled!.by_request as number,
      disabledByServer: disabled!.by_server as number,
      oldestUnsentMs: { ok: null, failing: null },
      oldestRetryingMs: { ok: null, failing: null },
    };
    for (const row of waiting) {
      const health: EndpointHealth = row.failing ? 'failing' : 'ok';
      backlog.oldestUnsentMs[health] = row.oldest_unsent ? (row.oldest_unsent as Date).getTime() : null;
      backlog.oldestRetryingMs[health] = row.oldest_retrying ? (row.oldest_retrying as Date).getTime() : null;
    }
    return backlog;
  });
}

let watching = false;

/** The primary calls this once: it registers the gauges and reads them with `sql` when scraped. */
export function watchDeliveryBacklog(sql: Sql): void {
  if (watching) return;
  watching = true;
  let last: DeliveryBacklog | null = null;
  let readAt = 0;
  // The reading in progress, or its first SCRAPE_WAIT_MS: both gauges of a scrape wait on the
  // same one, so a slow database delays the primary's part of a scrape by 1 s at most.
  let waiting: Promise<void> | null = null;

  const current = async (): Promise<DeliveryBacklog | null> => {
    if (waiting === null && Date.now() - readAt >= REFRESH_MS) {
      const reading = readDeliveryBacklog(sql)
        .then(
          (backlog) => {
            last = backlog;
          },
          (error: Error) => {
            last = null;
            log.warn({ err: error.message }, 'reading the webhook backlog for /metrics failed');
          },
        )
        .finally(() => {
          readAt = Date.now();
          waiting = null;
        });
      let timer: NodeJS.Timeout | undefined;
      waiting = Promise.race([
        reading,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, SCRAPE_WAIT_MS);
        }),
      ]).finally(() => clearTimeout(timer));
    }
    if (waiting !== null) await waiting;
    return last;
  };

  new Gauge({
    name: 'webhook_endpoints_disabled',
    help: 'Webhook endpoints disabled, by who: request (PATCH {"enabled": false}) or server (410 Gone, or failing for WEBHOOK_DISABLE_AFTER_HOURS). Database-wide: every node reports the same value.',
    labelNames: ['by'],
    aggregator: 'max',
    registers: [registry],
    async collect() {
      const backlog = await current();
      this.reset();
      if (backlog === null) return;
      this.set({ by: 'request' }, backlog.disabledByRequest);
      this.set({ by: 'server' }, backlog.disabledByServer);
    },
  });

  new Gauge({
    name: 'webhook_oldest_waiting_delivery_age_seconds',
    help: 'Age (since the event was received) of the oldest delivery an enabled endpoint is owed: state unsent (not attempted yet) or retrying (due again), by endpoint_health (failing: its latest attempt failed). 0 when none waits. Database-wide: every node reports the same value.',
    labelNames: ['state', 'endpoint_health'],
    aggregator: 'max',
    registers: [registry],
    async collect() {
      const backlog = await current();
      this.reset();
      if (backlog === null) return;
      const now = Date.now();
      const age = (receivedAtMs: number | null) =>
        receivedAtMs === null ? 0 : Math.max(0, (now - receivedAtMs) / 1000);
      for (const health of ['ok', 'failing'] as const) {
        this.set({ state: 'unsent', endpoint_health: health }, age(backlog.oldestUnsentMs[health]));
        this.set({ state: 'retrying', endpoint_health: health }, age(backlog.oldestRetryingMs[health]));
      }
    },
  });
}
