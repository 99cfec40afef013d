import type { Sql } from '../db/connect.js';
import { isoMs } from '../ids.js';
import { disableReason, type AttemptFailure } from './attempt.js';
import { log } from '../log.js';
import { ENDPOINTS_CHANGED_CHANNEL } from './endpoint-orgs.js';
import type { StreamPosition } from './event-reader.js';
import { aggregateStats, statsJson } from './endpoint-stats.js';

/** One attempt's result, written as (or appended to) the delivery's row. */
export interface AttemptRecord {
  orgId: string;
  endpointId: string;
  deliveryId: string;
  eventId: string;
  eventReceivedAtMs: number;
  status: 'succeeded' | 'failed' | 'dead';
  retryIndex: number;
  nextAttemptAtMs: number | null;
  /** JSON text of {"at", "response_status", "latency_ms", "error", "next_attempt_at"}. */
  attempt: string;
  /** For endpoint_stats (src/delivery/endpoint-stats.ts): the attempt's start, its latency, and whether it was the event's first. */
  attemptedAtMs: number;
  latencyMs: number;
  firstAttempt: boolean;
  /** Runs once the row has committed. */
  committed: () => void;
}

/** An attempt's effect on its endpoint's health: failing_since, and disabling. */
export interface EndpointHealth {
  orgId: string;
  endpointId: string;
  /**
   * The failure (failing_since is set if not set yet, and the endpoint may be disabled: 410 Gone,
   * or failing for too long by failing_since as stored); null for a success (cleared).
   */
  failure: AttemptFailure | null;
}

/** What the writer tells its owner (the engine) about what it committed. */
export interface ProgressPort {
  /** A commit disabled these endpoints (410 Gone, or failing for too long): stop sending to them. */
  endpointsDisabled(endpointIds: readonly string[]): void;
}

export interface ProgressWriterOptions {
  /** 0 = never disable for persistent failure (WEBHOOK_DISABLE_AFTER_HOURS). */
  disableAfterHours: number;
}

/** A stream whose committed position may have moved since its last write. */
export interface CursorSource {
  readonly orgId: string;
  readonly endpointId: string;
  /** The position to persist now, or null when it has not moved. */
  frontier(): StreamPosition | null;
  persisted(position: StreamPosition): void;
}

// A write that only moves cursors (events read that no endpoint wanted) waits this long, so an
// idle stream over a busy org costs a row update a second, not one per read.
const CURSOR_ONLY_DELAY_MS = 1_000;
const RETRY_AFTER_ERROR_MS = 1_000;

/**
 * Group commit of delivery progress for one delivery process: every attempt that finished while
 * the previous transaction was running, the health changes, and the stream cursors go into the
 * next single transaction. A successful delivery costs one row insert (and one index entry); the
 * cursor update is per endpoint per transaction, not per delivery.
 *
 * A stream's frontier only passes events whose rows are in this transaction or an earlier one:
 * `frontier()` is read right after the queue is taken, in the same tick, and a stream marks an
 * event done in the same tick as it queues the event's record.
 */
export class ProgressWriter {
  private records: AttemptRecord[] = [];
  private health: EndpointHealth[] = [];
  private readonly cursors = new Set<CursorSource>();
  private writing = false;
  private kickQueued = false;
  private timer: NodeJS.Timeout | null = null;
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly sql: Sql,
    private readonly options: ProgressWriterOptions,
    private readonly port: ProgressPort,
  ) {}

  add(record: AttemptRecord): void {
    this.records.push(record);
    this.kick();
  }

  setHealth(change: EndpointHealth): void {
    this.health.push(change);
    this.kick();
  }

  cursorMoved(source: CursorSource): void {
    this.cursors.add(source);
    if (!this.writing && this.timer === null)
      this.timer = setTimeout(() => {
        this.timer = null;
        this.kick(true);
      }, CURSOR_ONLY_DELAY_MS);
  }

  /** Resolves when everything queued so far has been written (or the writer gave up on it for now). */
  flushed(): Promise<void> {
    if (!this.writing && this.records.length === 0 && this.health.length === 0 && this.cursors.size === 0)
      return Promise.resolve();
    this.kick(true);
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Starts a write in a microtask, never synchronously: whatever the caller queues in the same
   * tick (a record, a health change, a slot marked done) lands in the same batch.
   */
  private kick(includeCursorsOnly = false): void {
    if (this.writing || this.kickQueued) return;
    if (this.records.length === 0 && this.health.length === 0 && !(includeCursorsOnly && this.cursors.size > 0)) return;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.kickQueued = true;
    queueMicrotask(() => {
      this.kickQueued = false;
      if (!this.writing) void this.writeLoop();
    });
  }

  private async writeLoop(): Promise<void> {
    this.writing = true;
    while (this.records.length > 0 || this.health.length > 0 || this.cursors.size > 0) {
      const records = this.records.splice(0);
      const health = this.health.splice(0);
      const moved: Array<{ source: CursorSource; position: StreamPosition }> = [];
      for (const source of this.cursors) {
        const position = source.frontier();
        if (position !== null) moved.push({ source, position });
      }
      this.cursors.clear();
      try {
        await this.write(
          records,
          health,
          moved.map((entry) => ({ source: entry.source, position: entry.position })),
        );
        for (const entry of moved) entry.source.persisted(entry.position);
        for (const record of records) record.committed();
      } catch (error) {
        log.error({ err: error, records: records.length }, 'writing webhook delivery progress failed; retrying');
        // Put everything back in front and try again shortly: an attempt is never forgotten.
        this.records.unshift(...records);
        this.health.unshift(...health);
        for (const entry of moved) this.cursors.add(entry.source);
        this.writing = false;
        this.timer = setTimeout(() => {
          this.timer = null;
          this.kick(true);
        }, RETRY_AFTER_ERROR_MS);
        return;
      }
    }
    this.writing = false;
    for (const wake of this.idleWaiters.splice(0)) wake();
  }

  private async write(
    records: AttemptRecord[],
    health: EndpointHealth[],
    moved: Array<{ source: CursorSource; position: StreamPosition }>,
  ): Promise<void> {
    const disabled: string[] = [];
    await this.sql.begin(async (tx) => {
      // Endpoint rows first, like the API's PATCH and DELETE: one lock order, no deadlock.
      // One statement for every endpoint's failures and one for the successes, whatever the
      // number of attempts and endpoints: a failing endpoint under a burst reports hundreds of
      // failures per batch, and a thousand hanging endpoints each report theirs (one statement
      // per endpoint, awaited in turn inside the transaction, was most of its round trips).
      const summaries = summariseHealth(health);
      const cleared = summaries.filter((change) => change.firstFailureMs === null);
      const failing = summaries.filter((change) => change.firstFailureMs !== null);
      if (cleared.length > 0) {
        await tx`update webhook_endpoints e set failing_since = null
                 from unnest(${cleared.map((c) => c.orgId)}::uuid[], ${cleared.map((c) => c.endpointId)}::uuid[]) as c(org_id, id)
                 where e.org_id = c.org_id and e.id = c.id and e.failing_since is not null`;
      }
      if (failing.length > 0) {
        // `restart`: a success earlier in the batch ended the previous failing streak. (The time
        // comes back as it is: Citus allows no stable function such as extract() in a RETURNING.
        // The flags go as text: the client sends an array of booleans as one boolean.)
        const rows = await tx`
          update webhook_endpoints e
          set failing_since = case when c.restart then c.failed_at else coalesce(e.failing_since, c.failed_at) end
          from unnest(${failing.map((c) => c.orgId)}::uuid[], ${failing.map((c) => c.endpointId)}::uuid[],
                      ${failing.map((c) => isoMs(c.firstFailureMs!))}::timestamptz[], ${failing.map((c) => (c.restart ? 't' : 'f'))}::text[]::bool[])
            as c(org_id, id, failed_at, restart)
          where e.org_id = c.org_id and e.id = c.id and e.enabled
          returning e.id, e.failing_since`;
        const stored = new Map(rows.map((row) => [row.id as string, (row.failing_since as Date).getTime()]));
        for (const change of failing) {
          const failingSinceMs = stored.get(change.endpointId);
          if (failingSinceMs === undefined) continue; // disabled or deleted meanwhile
          let reason: string | null = null;
          for (const failure of change.failures) {
            reason = disableReason(failure, failingSinceMs, this.options.disableAfterHours);
            if (reason !== null) break;
          }
          if (reason === null) continue;
          await tx`update webhook_endpoints set enabled = false, disabled_reason = ${reason}, updated_at = now()
                   where org_id = ${change.orgId} and id = ${change.endpointId}`;
          // Every process learns it at this commit, as for a PATCH (src/webhooks/service.ts).
          await tx`select pg_notify(${ENDPOINTS_CHANGED_CHANNEL}, ${change.orgId})`;
          disabled.push(change.endpointId);
        }
      }
      if (moved.length > 0) {
        // Cursors only move forward: a stream that lost its lease, or an endpoint re-enabled
        // (which restarts its cursor from the present), is never wound back.
        await tx`update webhook_endpoints e set cursor_seq = c.seq, cursor_id = c.id
                 from unnest(${moved.map((m) => m.source.orgId)}::uuid[], ${moved.map((m) => m.source.endpointId)}::uuid[],
                             ${moved.map((m) => m.position.seq)}::bigint[], ${moved.map((m) => m.position.id)}::uuid[]) as c(org_id, endpoint_id, seq, id)
                 where e.org_id = c.org_id and e.id = c.endpoint_id and e.cursor_seq < c.seq`;
      }
      if (records.length > 0) {
        // Sent in the same round trip as the deliveries' rows (pipelined by Promise.all, which
        // also handles both failures): one row per endpoint and minute per batch, however many
        // attempts it holds.
        const stats = tx`
          insert into endpoint_stats as s (org_id, endpoint_id, minute, attempts, succeeded, failed, dead,
                                           first_attempts, lag_ms_sum, lag_ms_max, latency_ms_sum)
          select u.o, u.e, u.m, u.n, u.s, u.f, u.x, u.fa, u.ls, u.lm, u.ts
          from json_to_recordset(${statsJson(aggregateStats(records))}::text::json)
            as u(o uuid, e uuid, m timestamptz, n int, s int, f int, x int, fa int, ls bigint, lm bigint, ts bigint)
          on conflict (org_id, endpoint_id, minute) do update set
            attempts = s.attempts + excluded.attempts, succeeded = s.succeeded + excluded.succeeded,
            failed = s.failed + excluded.failed, dead = s.dead + excluded.dead,
            first_attempts = s.first_attempts + excluded.first_attempts, lag_ms_sum = s.lag_ms_sum + excluded.lag_ms_sum,
            lag_ms_max = greatest(s.lag_ms_max, excluded.lag_ms_max), latency_ms_sum = s.latency_ms_sum + excluded.latency_ms_sum`;
        // One json parameter: ids, times and statuses need no escaping and each attempt already
        // is JSON text, so the rows are concatenated rather than serialised as nine arrays.
        // The join skips endpoints deleted meanwhile (their foreign key would fail the batch); a
        // join, not EXISTS: Citus plans no correlated subquery beside a set-returning function.
        // updated_at comes from here: Citus allows only immutable functions in a DO UPDATE SET.
        const deliveries = tx`
          insert into webhook_deliveries (org_id, endpoint_id, id, event_id, event_received_at, status, retry_index, next_attempt_at, attempts, updated_at)
          select u.o, u.e, u.d, u.v, u.r, u.s, u.i, u.n, jsonb_build_array(u.a), ${new Date()}::timestamptz
          from json_to_recordset(${recordsJson(records)}::text::json)
            as u(o uuid, e uuid, d uuid, v uuid, r timestamptz, s text, i int, n timestamptz, a jsonb)
          join webhook_endpoints w on w.org_id = u.o and w.id = u.e
          on conflict (org_id, endpoint_id, id) do update set
            status = excluded.status, retry_index = excluded.retry_index, next_attempt_at = excluded.next_attempt_at,
            attempts = webhook_deliveries.attempts || excluded.attempts, updated_at = excluded.updated_at`;
        await Promise.all([deliveries, stats]);
      }
    });
    if (disabled.length > 0) this.port.endpointsDisabled(disabled);
  }
}

function recordsJson(records: readonly AttemptRecord[]): string {
  let json = '[';
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    json +=
      (i === 0 ? '{"o":"' : ',{"o":"') +
      r.orgId +
      '","e":"' +
      r.endpointId +
      '","d":"' +
      r.deliveryId +
      '","v":"' +
      r.eventId +
      '","r":"' +
      isoMs(r.eventReceivedAtMs) +
      '","s":"' +
      r.status +
      '","i":' +
      r.retryIndex +
      ',"n":' +
      (r.nextAttemptAtMs === null ? 'null' : '"' + isoMs(r.nextAttemptAtMs) + '"') +
      ',"a":' +
      r.attempt +
      '}';
  }
  return json + ']';
}

interface HealthSummary {
  orgId: string;
  endpointId: string;
  /** The first failure after the batch's last success; null when the batch ends on a success. */
  firstFailureMs: number | null;
  /** The batch had a success before its failures: failing_since starts again. */
  restart: boolean;
  failures: AttemptFailure[];
}

/** Per endpoint, in order: what its attempts in this batch leave failing_since as. */
function summariseHealth(changes: readonly EndpointHealth[]): HealthSummary[] {
  const byEndpoint = new Map<string, HealthSummary>();
  for (const change of changes) {
    let summary = byEndpoint.get(change.endpointId);
    if (!summary) {
      summary = {
        orgId: change.orgId,
        endpointId: change.endpointId,
        firstFailureMs: null,
        restart: false,
        failures: [],
      };
      byEndpoint.set(change.endpointId, summary);
    }
    if (change.failure === null) {
      summary.firstFailureMs = null;
      summary.failures = [];
      summary.restart = true;
    } else {
      summary.firstFailureMs ??= change.failure.atMs;
      summary.failures.push(change.failure);
    }
  }
  // A batch that ends on a success only clears; one whose failures follow a success restarts the streak.
  for (const summary of byEndpoint.values()) if (summary.firstFailureMs === null) summary.restart = false;
  return [...byEndpoint.values()];
}
