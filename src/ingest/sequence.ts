import { randomUUID } from 'node:crypto';
import type { Queryable } from '../db/connect.js';

/**
 * A flush's registration in event_inflight (sql/007_org_sequence.sql explains the watermark).
 *
 * `register` runs first, in a transaction of its own: one row per org of the flush, each holding
 * a number drawn from event_order then, below every seq the flush's rows will draw. `release`
 * runs inside the flush's transaction, so the registration disappears exactly when the events
 * appear. The flush must not write its rows if `register` failed (copy-pool.ts and dedup-flush.ts
 * see to it). A registration outlives a flush that died only until `expires_at`, which the caller
 * sets beyond the longest the flush's transaction can live.
 */
export class FlushRegistration {
  readonly flushId = randomUUID();
  readonly orgIds: string[];
  readonly register: string;
  readonly release: string;

  constructor(rows: ReadonlyArray<{ readonly orgId: string }>, lifetimeMs: number) {
    const orgs = new Set<string>();
    for (const row of rows) orgs.add(row.orgId);
    this.orgIds = [...orgs].sort();
    let values = '';
    for (const org of this.orgIds) {
      // org ids come from verified API keys; checked again because they are spliced in.
      if (!UUID_RE.test(org)) throw new Error(`not an org id: ${JSON.stringify(org)}`);
      values += (values ? ',' : '') + "('" + org + "','" + this.flushId + "',nextval('event_order'),now()+interval '" + Math.ceil(lifetimeMs) + " ms')";
    }
    this.register = 'insert into event_inflight (org_id, flush_id, low_seq, expires_at) values ' + values;
    this.release = "delete from event_inflight where org_id in ('" + this.orgIds.join("','") + "') and flush_id = '" + this.flushId + "'";
  }
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;


/**
 * The org's watermark as a scalar subquery, for a read of its events: the lowest low_seq of its
 * live registrations, or bigint's largest value when none. Rows below it are safe to hand out
 * (sql/007_org_sequence.sql); evaluated in the reading statement's own snapshot.
 */
export function orgWatermark(sql: Queryable, orgId: string) {
  return sql`(select coalesce(min(low_seq), 9223372036854775807) from event_inflight where org_id = ${orgId} and expires_at > now())`;
}
