import type { Sql } from '../db/connect.js';
import { isoMs } from '../ids.js';
import { log } from '../log.js';
import { deliveryObserver } from './observer.js';
import { parseRetryAfter, retryDelayMs } from './retry.js';
import type { SendOutcome, WebhookSender } from './sender.js';
import { secretKey, signatureHeader } from './signature.js';
import { SuccessRecorder } from './success-recorder.js';

export interface DispatcherOptions {
  /** This process's row in delivery_workers: the owner written on every lease. */
  workerId: string;
  retryScheduleMs: readonly number[];
  timeoutMs: number;
  /** 0 = never disable for persistent failure. */
  disableAfterHours: number;
  /** Sends in flight to one endpoint from this process. */
  perEndpointConcurrency: number;
  /** Sends in flight from this process in total. */
  maxInFlight: number;
  /** A lease whose owner has not heartbeated for this long is free to take. */
  staleOwnerMs: number;
}

interface Claim {
  id: string;
  event_id: string;
  event_received_at: Date;
  retry_index: number;
  endpoint_id: string;
  url: string;
  secret: string;
  previous_secret: string | null;
}

type Final = 'succeeded' | 'failed' | 'dead';

/**
 * Claims due deliveries and sends them. A claim is a lease (owner + expiry) written with
 * FOR UPDATE SKIP LOCKED, so workers on several nodes never take the same row in the normal
 * case. Capacity is per endpoint: a claim never takes more rows for an endpoint than it has free
 * slots, so an endpoint that hangs holds at most `perEndpointConcurrency` sends and nothing else
 * waits behind it. Sends are not awaited by the claim loop; each records its own outcome.
 */
export class Dispatcher {
  private inFlight = 0;
  private readonly busy = new Map<string, number>();
  private readonly aborts = new Set<AbortController>();
  private idleWaiters: Array<() => void> = [];
  /** Called when capacity frees up, so the loop can claim again at once. */
  onCapacity: () => void = () => {};
  private readonly successes: SuccessRecorder;

  constructor(private readonly sql: Sql, private readonly sender: WebhookSender, private readonly options: DispatcherOptions) {
    this.successes = new SuccessRecorder(sql, options.workerId);
  }

  get sending(): number {
    return this.inFlight;
  }

  /** Claims what is due (within capacity) and starts sending it; returns how many were claimed. */
  async claimAndSend(): Promise<number> {
    const room = this.options.maxInFlight - this.inFlight;
    if (room <= 0) return 0;
    const busyIds = [...this.busy.keys()];
    const busyCounts = busyIds.map((id) => this.busy.get(id)!);
    const leaseSeconds = (this.options.timeoutMs + 60_000) / 1000;
    const claims = await this.sql<Claim[]>`
      update webhook_deliveries d
      set lease_owner = ${this.options.workerId}, lease_until = now() + make_interval(secs => ${leaseSeconds}), updated_at = now()
      from (
        select c.id, e.id as endpoint_id, e.url, e.secret,
          case when e.previous_secret_expires_at > now() then e.previous_secret end as previous_secret
        from webhook_endpoints e
        left join unnest(${busyIds}::uuid[], ${busyCounts}::int[]) as b(endpoint_id, n) on b.endpoint_id = e.id
        cross join lateral (
          select x.id from webhook_deliveries x
          where x.endpoint_id = e.id and x.status in ('pending', 'failed') and x.next_attempt_at <= now()
            and (x.lease_owner is null or x.lease_until < now() or not exists (
              select 1 from delivery_workers w
              where w.id = x.lease_owner and w.heartbeat_at > now() - make_interval(secs => ${this.options.staleOwnerMs / 1000})))
          order by x.next_attempt_at
          -- An endpoint that is failing gets one send at a time: a thousand hanging endpoints
          -- then hold a thousand sockets, not four thousand, and healthy ones keep their slots.
          limit greatest(0, (case when e.failing_since is null then ${this.options.perEndpointConcurrency}::int else 1 end) - coalesce(b.n, 0))
          for update of x skip locked
        ) c
        where e.enabled
        limit ${room}
      ) picked
      where d.id = picked.id
      returning d.id, d.event_id, d.event_received_at, d.retry_index,
        picked.endpoint_id, picked.url, picked.secret, picked.previous_secret`;
    if (claims.length === 0) return 0;

    const events = await this.sql`
      select id, type, payload::text as payload, occurred_at, received_at
      from events
      where id = any(${claims.map((c) => c.event_id)}::uuid[])
        and received_at = any(${claims.map((c) => c.event_received_at.toISOString())}::timestamptz[])`;
    const bodies = new Map<string, string>();
    for (const event of events) bodies.set(event.id as string, webhookBody(event));

    for (const claim of claims) {
      this.inFlight++;
      this.busy.set(claim.endpoint_id, (this.busy.get(claim.endpoint_id) ?? 0) + 1);
      void this.deliver(claim, bodies.get(claim.event_id)).finally(() => this.release(claim.endpoint_id));
    }
    return claims.length;
  }

  /** Resolves when no send is in flight. */
  idle(): Promise<void> {
    return this.inFlight === 0 ? Promise.resolve() : new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Cuts every send in flight short; their leases are released without counting an attempt. */
  abortAll(): void {
    for (const controller of this.aborts) controller.abort();
  }

  private release(endpointId: string): void {
    this.inFlight--;
    const left = (this.busy.get(endpointId) ?? 1) - 1;
    if (left <= 0) this.busy.delete(endpointId);
    else this.busy.set(endpointId, left);
    if (this.inFlight === 0) for (const wake of this.idleWaiters.splice(0)) wake();
    this.onCapacity();
  }

  private async deliver(claim: Claim, body: string | undefined): Promise<void> {
    const attemptedAt = new Date();
    try {
      if (body === undefined) {
        // Retention dropped the event before it could be delivered: nothing left to send.
        await this.record(claim, attemptedAt, { status: null, latencyMs: 0, error: 'event no longer retained', retryAfter: undefined }, 'dead', null);
        return;
      }
      const keys = [secretKey(claim.secret)];
      if (claim.previous_secret) keys.push(secretKey(claim.previous_secret));
      const timestamp = Math.floor(attemptedAt.getTime() / 1000);
      const headers = {
        'webhook-id': claim.event_id,
        'webhook-timestamp': String(timestamp),
        'webhook-signature': signatureHeader(keys, claim.event_id, timestamp, body),
      };
      const controller = new AbortController();
      this.aborts.add(controller);
      let outcome: SendOutcome;
      try {
        outcome = await this.sender.send(claim.url, headers, body, controller.signal);
      } finally {
        this.aborts.delete(controller);
      }
      if (controller.signal.aborted) {
        // Shutting down: hand the delivery back untouched so the next worker sends it promptly.
        await this.sql`update webhook_deliveries set lease_owner = null, lease_until = null
                       where id = ${claim.id} and lease_owner = ${this.options.workerId}`;
        return;
      }
      const ok = outcome.status !== null && outcome.status >= 200 && outcome.status < 300;
      if (ok) {
        await this.successes.record({ deliveryId: claim.id, endpointId: claim.endpoint_id, attemptedAt, status: outcome.status!, latencyMs: outcome.latencyMs });
        deliveryObserver.attempted('succeeded', outcome.latencyMs / 1000);
        return;
      }
      const delay = retryDelayMs(this.options.retryScheduleMs, claim.retry_index, parseRetryAfter(outcome.retryAfter));
      await this.record(claim, attemptedAt, outcome, delay === null ? 'dead' : 'failed', delay);
    } catch (error) {
      // The lease expires (or the owner check frees it), so the delivery is retried later.
      log.error({ err: error, delivery: claim.id }, 'recording a webhook attempt failed');
    }
  }

  private async record(claim: Claim, attemptedAt: Date, outcome: SendOutcome, final: Final, delayMs: number | null): Promise<void> {
    const ok = final === 'succeeded';
    // Locks in the same order as fan-out and DELETE (endpoint, then its deliveries): no deadlock.
    const disableReason = await this.sql.begin(async (tx) => {
      let reason: string | null = null;
      if (ok) {
        await tx`update webhook_endpoints set failing_since = null where id = ${claim.endpoint_id} and failing_since is not null`;
      } else {
        const [endpoint] = await tx`
          update webhook_endpoints set failing_since = coalesce(failing_since, ${attemptedAt})
          where id = ${claim.endpoint_id} returning failing_since, enabled`;
        if (endpoint?.enabled) reason = this.disableReason(outcome, attemptedAt, endpoint.failing_since as Date);
        if (reason !== null) {
          await tx`update webhook_endpoints set enabled = false, disabled_reason = ${reason}, updated_at = now()
                   where id = ${claim.endpoint_id}`;
        }
      }
      const [delivery] = await tx`
        update webhook_deliveries set
          status = ${final},
          retry_index = retry_index + ${ok ? 0 : 1},
          next_attempt_at = case when ${delayMs}::float8 is null then null else now() + make_interval(secs => ${delayMs}::float8 / 1000) end,
          lease_owner = null, lease_until = null, updated_at = now()
        where id = ${claim.id} and lease_owner = ${this.options.workerId}
        returning next_attempt_at`;
      await tx`
        insert into webhook_attempts (delivery_id, attempted_at, response_status, latency_ms, error, next_attempt_at)
        select ${claim.id}, ${attemptedAt}, ${outcome.status}, ${outcome.latencyMs}, ${outcome.error}, ${delivery?.next_attempt_at ?? null}
        where exists (select 1 from webhook_deliveries where id = ${claim.id})`;
      return reason;
    });
    deliveryObserver.attempted(final, outcome.latencyMs / 1000);
    if (disableReason !== null) log.warn({ endpoint: claim.endpoint_id, reason: disableReason }, 'webhook endpoint disabled');
  }

  private disableReason(outcome: SendOutcome, attemptedAt: Date, failingSince: Date): string | null {
    if (outcome.status === 410) {
      return `The endpoint answered 410 Gone at ${isoMs(attemptedAt.getTime())}; fix it and PATCH {"enabled": true} to resume.`;
    }
    const hours = this.options.disableAfterHours;
    if (hours > 0 && attemptedAt.getTime() - failingSince.getTime() >= hours * 3_600_000) {
      return `Every delivery attempt failed for ${hours} hours (since ${isoMs(failingSince.getTime())}); fix the endpoint and PATCH {"enabled": true} to resume.`;
    }
    return null;
  }
}

/** The documented body; the payload is spliced in as stored (jsonb text), not re-serialised. */
function webhookBody(event: Record<string, any>): string {
  return '{"id":"' + event.id + '","type":' + JSON.stringify(event.type) + ',"payload":' + event.payload +
    ',"occurred_at":' + (event.occurred_at ? '"' + isoMs(event.occurred_at.getTime()) + '"' : 'null') +
    ',"received_at":"' + isoMs(event.received_at.getTime()) + '"}';
}
