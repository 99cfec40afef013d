import type { Sql } from '../db/connect.js';

export interface LeaseState {
  /** Endpoints this process holds now. */
  held: Set<string>;
  /** How many this process should hold: enabled endpoints over live delivery processes, rounded up. */
  share: number;
}

/**
 * Which delivery process streams which endpoint (delivery_leases). Every send to an endpoint
 * comes from its lease holder: that is what makes its rate limit, fifo order and adaptive window
 * hold across processes and nodes with purely local state, and what keeps two nodes from sending
 * the same event.
 *
 * A lease lasts `ttlMs` and is renewed with every heartbeat. A process takes unheld or expired
 * leases up to its fair share; one holding more than its share hands the surplus back (after its
 * sends finished and its cursor was written, see the engine), so a process that joins gets work.
 * A process that dies loses its leases when they expire, and the others take them over from the
 * endpoint's persisted cursor.
 */
export class LeaseKeeper {
  /** What the last renewal returned, with the claims and releases since. */
  private held = new Set<string>();
  private renewedAt = -Infinity;
  private readonly renewAfterMs: number;

  constructor(
    private readonly sql: Sql,
    private readonly workerId: string,
    private readonly ttlMs: number,
    private readonly liveWithinMs: number,
  ) {
    // Every endpoint change syncs (src/delivery/engine.ts), and a sync that rewrote every held
    // lease made creating 1 000 endpoints one by one write ~90 000 lease rows. A sync this soon
    // after a renewal keeps the leases it wrote: they are valid for the TTL, far longer.
    this.renewAfterMs = Math.min(1_000, ttlMs / 4);
  }

  async renewAndClaim(): Promise<LeaseState> {
    const ttl = this.ttlMs / 1000;
    const started = performance.now();
    if (started - this.renewedAt >= this.renewAfterMs) {
      const renewed = await this.sql`
        update delivery_leases set expires_at = now() + make_interval(secs => ${ttl})
        where owner = ${this.workerId} and expires_at > now()
        returning endpoint_id`;
      this.held = new Set(renewed.map((row) => row.endpoint_id as string));
      this.renewedAt = started;
    }
    const held = new Set(this.held);
    // Endpoints (per tenant, distributed on Citus) and leases (bookkeeping, local to the
    // coordinator) are never joined in one statement: Citus refuses direct joins between the two.
    const [endpoints] = await this.sql`select count(*)::int as n from webhook_endpoints where enabled`;
    const [workers] = await this.sql`
      select count(*)::int as n from delivery_workers where heartbeat_at > now() - make_interval(secs => ${this.liveWithinMs / 1000})`;
    const share = Math.ceil((endpoints!.n as number) / Math.max(1, workers!.n as number));
    if (held.size < share) {
      const enabled = await this.sql`select id, org_id from webhook_endpoints where enabled`;
      // Random order: processes claiming at the same moment rarely reach for the same rows, and
      // the ON CONFLICT … WHERE settles any that they do.
      const claimed = await this.sql`
        insert into delivery_leases (endpoint_id, org_id, owner, expires_at)
        select e.id, e.org_id, ${this.workerId}, now() + make_interval(secs => ${ttl})
        from unnest(${enabled.map((row) => row.id as string)}::uuid[], ${enabled.map((row) => row.org_id as string)}::uuid[]) as e(id, org_id)
        where not exists (select 1 from delivery_leases l where l.endpoint_id = e.id and l.expires_at > now())
        order by random()
        limit ${share - held.size}
        on conflict (endpoint_id) do update set owner = excluded.owner, org_id = excluded.org_id, expires_at = excluded.expires_at
          where delivery_leases.expires_at <= now()
        returning endpoint_id`;
      for (const row of claimed) {
        held.add(row.endpoint_id as string);
        this.held.add(row.endpoint_id as string);
      }
    }
    return { held, share };
  }

  /** Hands leases back (surplus, a disabled or deleted endpoint, shutdown); others may take them at once. */
  async release(endpointIds: readonly string[]): Promise<void> {
    if (endpointIds.length === 0) return;
    for (const id of endpointIds) this.held.delete(id);
    await this
      .sql`delete from delivery_leases where owner = ${this.workerId} and endpoint_id = any(${endpointIds as string[]}::uuid[])`;
  }

  async releaseAll(): Promise<void> {
    this.held.clear();
    await this.sql`delete from delivery_leases where owner = ${this.workerId}`;
  }

  /** Leases of endpoints that no longer exist, long expired. */
  async removeStale(): Promise<void> {
    await this.sql`delete from delivery_leases where expires_at < now() - interval '1 hour'`;
  }
}
