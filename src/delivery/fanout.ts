import type { Sql } from '../db/connect.js';
import { uuidv7 } from '../ids.js';
import { eventTypeMatcher } from '../webhooks/event-types.js';

// Events read per endpoint per transaction; a full batch means "look again at once".
const FANOUT_BATCH = 500;

/**
 * Turns new events into delivery rows, per endpoint, with the inbox's no-skip watermark: only
 * rows with xid below the oldest running transaction are read, in (xid, id) order, and the
 * endpoint's cursor moves in the same transaction that inserts the deliveries. A crash between
 * reading and committing leaves the cursor where it was, so nothing is lost; the unique
 * (endpoint_id, event_id) makes a repeat harmless. The endpoint row is locked with SKIP LOCKED, so
 * delivery workers on several nodes share endpoints instead of scanning the same one twice.
 */
export class Fanout {
  constructor(private readonly sql: Sql) {}

  /** One pass over every enabled endpoint with new events; returns how many deliveries were created. */
  async runOnce(): Promise<{ created: number; more: boolean }> {
    // One query finds the endpoints that have anything new below the watermark (an index probe
    // each), so idle endpoints cost nothing more per tick.
    const endpoints = await this.sql`
      select e.id from webhook_endpoints e
      where e.enabled and exists (
        select 1 from events ev
        where ev.org_id = e.org_id
          and (ev.xid, ev.id) > (e.cursor_xid, e.cursor_id)
          and ev.xid < pg_snapshot_xmin(pg_current_snapshot())
          and ev.received_at >= e.deliver_from)`;
    let created = 0;
    let more = false;
    for (const { id } of endpoints) {
      const result = await this.scanEndpoint(id as string);
      created += result.created;
      if (result.more) more = true;
    }
    return { created, more };
  }

  private scanEndpoint(endpointId: string): Promise<{ created: number; more: boolean }> {
    return this.sql.begin(async (tx) => {
      const [endpoint] = await tx`
        select org_id, event_types, cursor_xid::text as cursor_xid, cursor_id, deliver_from
        from webhook_endpoints where id = ${endpointId} and enabled
        for update skip locked`;
      if (!endpoint) return { created: 0, more: false };
      const events = await tx`
        select id, xid::text as xid, type, received_at
        from events
        where org_id = ${endpoint.org_id}
          and received_at >= ${endpoint.deliver_from}
          and (xid, id) > (${endpoint.cursor_xid}::xid8, ${endpoint.cursor_id}::uuid)
          and xid < pg_snapshot_xmin(pg_current_snapshot())
        order by xid, id
        limit ${FANOUT_BATCH}`;
      if (events.length === 0) return { created: 0, more: false };
      const matches = eventTypeMatcher(endpoint.event_types as string[]);
      const deliveryIds: string[] = [];
      const eventIds: string[] = [];
      const receivedAts: Date[] = [];
      const now = Date.now();
      for (const event of events) {
        if (!matches(event.type as string)) continue;
        deliveryIds.push(uuidv7(now));
        eventIds.push(event.id as string);
        receivedAts.push(event.received_at as Date);
      }
      let created = 0;
      if (deliveryIds.length > 0) {
        const inserted = await tx`
          insert into webhook_deliveries (id, endpoint_id, event_id, event_received_at, status, next_attempt_at)
          select d.id, ${endpointId}, d.event_id, d.received_at, 'pending', now()
          from unnest(${deliveryIds}::uuid[], ${eventIds}::uuid[], ${receivedAts.map((at) => at.toISOString())}::timestamptz[]) as d(id, event_id, received_at)
          on conflict (endpoint_id, event_id) do nothing`;
        created = inserted.count;
      }
      const last = events[events.length - 1]!;
      await tx`update webhook_endpoints set cursor_xid = ${last.xid}::xid8, cursor_id = ${last.id} where id = ${endpointId}`;
      return { created, more: events.length === FANOUT_BATCH };
    });
  }
}
