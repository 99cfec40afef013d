import type { Sql } from '../db/connect.js';

export interface SuccessRecord {
  deliveryId: string;
  endpointId: string;
  attemptedAt: Date;
  status: number;
  latencyMs: number;
  done(error?: unknown): void;
}

/**
 * Group commit for successful attempts, the hot path of delivery: whatever succeeded while the
 * previous write was running goes into the next single transaction (three statements for any
 * number of deliveries), instead of one transaction per delivery. Failures are rarer and need
 * per-endpoint decisions (disable, back-off), so the dispatcher records them one by one.
 */
export class SuccessRecorder {
  private queue: SuccessRecord[] = [];
  private writing = false;

  constructor(private readonly sql: Sql, private readonly workerId: string) {}

  record(entry: Omit<SuccessRecord, 'done'>): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ ...entry, done: (error) => (error ? reject(error) : resolve()) });
      if (!this.writing) void this.writeLoop();
    });
  }

  private async writeLoop(): Promise<void> {
    this.writing = true;
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0);
      try {
        await this.write(batch);
        for (const entry of batch) entry.done();
      } catch (error) {
        for (const entry of batch) entry.done(error);
      }
    }
    this.writing = false;
  }

  private write(batch: SuccessRecord[]): Promise<void> {
    const endpointIds = [...new Set(batch.map((entry) => entry.endpointId))];
    return this.sql.begin(async (tx) => {
      // Endpoint rows first, like fan-out and DELETE: the same lock order everywhere.
      await tx`update webhook_endpoints set failing_since = null
               where id = any(${endpointIds}::uuid[]) and failing_since is not null`;
      await tx`
        update webhook_deliveries d set status = 'succeeded', next_attempt_at = null,
          lease_owner = null, lease_until = null, updated_at = now()
        from unnest(${batch.map((entry) => entry.deliveryId)}::uuid[]) as u(id)
        where d.id = u.id and d.lease_owner = ${this.workerId}`;
      // An attempt is history even if the lease was lost meanwhile; skip only deleted deliveries.
      await tx`
        insert into webhook_attempts (delivery_id, attempted_at, response_status, latency_ms, error, next_attempt_at)
        select u.id, u.at, u.status, u.latency, null, null
        from unnest(${batch.map((entry) => entry.deliveryId)}::uuid[], ${batch.map((entry) => entry.attemptedAt.toISOString())}::timestamptz[],
                    ${batch.map((entry) => entry.status)}::int[], ${batch.map((entry) => entry.latencyMs)}::int[]) as u(id, at, status, latency)
        where exists (select 1 from webhook_deliveries d where d.id = u.id)`;
    }) as Promise<unknown> as Promise<void>;
  }
}
