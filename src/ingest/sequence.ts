/**
 * The statement that puts a firehose flush in its orgs' commit order (sql/007_org_sequence.sql).
 *
 * It locks each org's row in event_seq (creating it on the org's first event) and counts the rows
 * the flush writes. The locks are held until the flush commits, and the rows take their seq from
 * the event_order sequence only after, in the COPY: so a later flush of the same org numbers its
 * rows after this one committed, and readers can follow seq with no watermark. Orgs are locked in
 * org_id order, in one statement, so two flushes that share orgs queue up instead of deadlocking.
 */

// org ids come from verified API keys; checked again because they are spliced into the statement.
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function orgOrderStatement(rows: ReadonlyArray<{ readonly orgId: string }>): string {
  const counts = new Map<string, number>();
  for (const row of rows) counts.set(row.orgId, (counts.get(row.orgId) ?? 0) + 1);
  let values = '';
  for (const org of [...counts.keys()].sort()) {
    if (!UUID_RE.test(org)) throw new Error(`not an org id: ${JSON.stringify(org)}`);
    values += (values ? ',' : '') + "('" + org + "'," + counts.get(org) + ')';
  }
  return 'insert into event_seq (org_id, events) values ' + values +
    ' on conflict (org_id) do update set events = event_seq.events + excluded.events';
}
