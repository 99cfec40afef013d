import type { Sql } from '../db/connect.js';
import { uuidv7 } from '../ids.js';
import { log } from '../log.js';
import { eventTypeMatcher, type EventTypeMatcher } from '../webhooks/event-types.js';

// Events read per transaction; a full batch means "look again at once".
const FANOUT_BATCH = 2000;
// A pass reads events whose xid lies in [cursor, cursor + span). The span adapts so that a window
// holds about one batch: without an upper bound every pass of a large backlog would re-read the
// whole backlog from the BRIN index and sort it only to keep the first FANOUT_BATCH (quadratic).
const INITIAL_SPAN = 4096n;
const MAX_SPAN = 1n << 30n;
// How often the fan-out summarizes newly filled BRIN block ranges itself (see summarizeNewRanges).
const SUMMARIZE_INTERVAL_MS = 1_000;
const LOCK_NOT_AVAILABLE = '55P03';
const ZERO_UUID = '00000000-0000-0000-0000-000000000000';

interface Endpoint {
  id: string;
  deliverFrom: number;
  matches: EventTypeMatcher;
}

/**
 * Turns new events into delivery rows with one global cursor (the single row of webhook_fanout)
 * and the inbox's no-skip watermark: only rows whose xid is below the oldest running transaction
 * are read, in (xid, id) order, and the cursor moves in the same transaction that inserts the
 * deliveries. A crash before commit leaves the cursor where it was; the unique
 * (endpoint_id, event_id) makes the repeat harmless.
 *
 * No per-row btree on events serves this: events are found through the BRIN index
 * events_xid_brin on (xid::text)::bigint (sql/004_fanout.sql), which costs next to nothing per
 * insert. BRIN treats block ranges it has not summarized yet as matching, and the newest rows sit
 * in exactly those ranges, so the fan-out summarizes new ranges itself about once a second
 * (autovacuum would only get to them after its naptime, a minute by default, or when it next
 * vacuums the partition; meanwhile every pass would re-read that whole tail). Measured on 200 000
 * rows: a pass at the tail reads ~40 heap blocks (the filling range and the one before), ~2 ms;
 * with nothing summarized it reads all 3 800 blocks, ~140 ms.
 *
 * The cursor row is locked FOR UPDATE SKIP LOCKED: one pass runs at a time across every delivery
 * worker on every node; the others find nothing to do. Creating or re-enabling an endpoint takes
 * the same row FOR SHARE (src/webhooks/service.ts, lockFanoutCursor), which is what makes the
 * cursor safe to move for endpoints a pass cannot see yet; the argument is there.
 */
export class Fanout {
  private span = INITIAL_SPAN;
  private lastSummarized = 0;

  constructor(private readonly sql: Sql) {}

  /** One pass; returns how many deliveries were created and whether more events are waiting. */
  async runOnce(): Promise<{ created: number; more: boolean }> {
    if (Date.now() - this.lastSummarized >= SUMMARIZE_INTERVAL_MS) {
      this.lastSummarized = Date.now();
      await this.summarizeNewRanges();
    }
    return this.pass();
  }

  private pass(): Promise<{ created: number; more: boolean }> {
    return this.sql.begin(async (tx) => {
      // The watermark comes from this statement's snapshot: every xid below it had finished
      // before the statement began, so every later statement here sees all of those rows.
      const [cursor] = await tx`
        select cursor_xid::text as xid, cursor_id::text as id, pg_snapshot_xmin(pg_current_snapshot())::text as watermark
        from webhook_fanout where id = 1
        for update skip locked`;
      // Another worker's pass, or an endpoint being created or re-enabled: try again next tick.
      if (!cursor) return { created: 0, more: false };
      const from = BigInt(cursor.xid as string);
      const watermark = BigInt(cursor.watermark as string);
      if (from >= watermark) return { created: 0, more: false };

      // deliver_from has microseconds, received_at whole milliseconds (stamped from Date.now()):
      // rounding deliver_from up to the millisecond keeps `received_at >= deliver_from` exact.
      const rows = await tx`
        select id, org_id, event_types, ceil(extract(epoch from deliver_from) * 1000)::float8 as deliver_from_ms
        from webhook_endpoints where enabled`;
      if (rows.length === 0) {
        // Nobody to deliver to: everything below the watermark is nobody's. An endpoint created
        // now waits for this transaction's lock, and only wants events received after that.
        await tx`update webhook_fanout set cursor_xid = ${cursor.watermark}::xid8, cursor_id = ${ZERO_UUID} where id = 1`;
        return { created: 0, more: false };
      }
      const byOrg = new Map<string, Endpoint[]>();
      let earliest = Infinity;
      for (const row of rows) {
        const deliverFrom = row.deliver_from_ms as number;
        if (deliverFrom < earliest) earliest = deliverFrom;
        const list = byOrg.get(row.org_id as string) ?? [];
        list.push({ id: row.id as string, deliverFrom, matches: eventTypeMatcher(row.event_types as string[]) });
        byOrg.set(row.org_id as string, list);
      }

      const upper = from + this.span < watermark ? from + this.span : watermark;
      // The two bounds on (xid::text)::bigint are what the BRIN index can use; the row
      // comparison is the exact cursor. received_at >= the earliest deliver_from prunes
      // partitions no endpoint wants. The xid is returned as cursor_xid, not as `xid`: ORDER BY
      // xid would then sort by that text ('10' < '9').
      const events = await tx`
        select id, org_id, xid::text as cursor_xid, type, received_at
        from events
        where ((xid::text)::bigint) >= ${from.toString()}::bigint
          and ((xid::text)::bigint) < ${upper.toString()}::bigint
          and (xid, id) > (${cursor.xid}::xid8, ${cursor.id}::uuid)
          and org_id = any(${[...byOrg.keys()]}::uuid[])
          and received_at >= ${new Date(earliest).toISOString()}::timestamptz
        order by xid, id
        limit ${FANOUT_BATCH}`;

      const deliveryIds: string[] = [];
      const endpointIds: string[] = [];
      const eventIds: string[] = [];
      const receivedAts: string[] = [];
      const now = Date.now();
      for (const event of events) {
        const receivedAt = event.received_at as Date;
        for (const endpoint of byOrg.get(event.org_id as string)!) {
          if (receivedAt.getTime() < endpoint.deliverFrom || !endpoint.matches(event.type as string)) continue;
          deliveryIds.push(uuidv7(now));
          endpointIds.push(endpoint.id);
          eventIds.push(event.id as string);
          receivedAts.push(receivedAt.toISOString());
        }
      }
      let created = 0;
      if (deliveryIds.length > 0) {
        // The semi-join skips an endpoint deleted since it was read above (its foreign key would
        // otherwise fail the whole pass).
        const inserted = await tx`
          insert into webhook_deliveries (id, endpoint_id, event_id, event_received_at, status, next_attempt_at)
          select d.id, d.endpoint_id, d.event_id, d.received_at, 'pending', now()
          from unnest(${deliveryIds}::uuid[], ${endpointIds}::uuid[], ${eventIds}::uuid[], ${receivedAts}::timestamptz[])
            as d(id, endpoint_id, event_id, received_at)
          where d.endpoint_id in (select id from webhook_endpoints)
          on conflict (endpoint_id, event_id) do nothing`;
        created = inserted.count;
      }

      let more: boolean;
      if (events.length === FANOUT_BATCH) {
        // The window held more than a batch: resume right after the last row, with a narrower window.
        const last = events[events.length - 1]!;
        await tx`update webhook_fanout set cursor_xid = ${last.cursor_xid}::xid8, cursor_id = ${last.id} where id = 1`;
        if (this.span > 1n) this.span /= 2n;
        more = true;
      } else {
        // Every row with xid below `upper` (<= the watermark) has been seen.
        await tx`update webhook_fanout set cursor_xid = ${upper.toString()}::xid8, cursor_id = ${ZERO_UUID} where id = 1`;
        more = upper < watermark;
        if (more && events.length < FANOUT_BATCH / 4 && this.span < MAX_SPAN) this.span *= 2n;
      }
      return { created, more };
    });
  }

  /**
   * Summarizes the BRIN ranges not summarized yet on the partitions that still take inserts.
   * It takes a SHARE UPDATE EXCLUSIVE lock (like VACUUM; inserts are not blocked), so it gives up
   * at once rather than wait behind a vacuum of the partition: it is only an optimisation.
   */
  private async summarizeNewRanges(): Promise<void> {
    try {
      await this.sql.begin(async (tx) => {
        await tx`set local lock_timeout = '50ms'`;
        await tx`select summarize_recent_event_xid_ranges()`;
      });
    } catch (error) {
      // A lock timeout (a vacuum holds the partition) is expected now and then: the next
      // interval tries again. Anything else is worth a line, but never fails the fan-out.
      if ((error as { code?: string }).code !== LOCK_NOT_AVAILABLE) log.warn({ err: error }, 'summarizing the events BRIN index failed');
    }
  }
}
