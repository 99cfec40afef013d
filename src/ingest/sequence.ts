/**
 * Per-org sequence numbers for a firehose flush (sql/007_org_sequence.sql explains the order).
 *
 * A flush bumps event_seq.last_seq by the number of rows it writes for each org and numbers those
 * rows last_seq - n + 1 … last_seq in batch order. The bump's row lock is held until the flush
 * commits, so a later flush of the same org gets higher numbers and becomes visible after it:
 * readers can follow `seq` with no watermark. Orgs are claimed in org_id order, in one statement,
 * so two flushes that share orgs queue up instead of deadlocking.
 */

interface SequencedRow {
  readonly orgId: string;
  seq: number;
}

// org ids come from verified API keys; checked again because they are spliced into the statement.
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export class SequenceClaim {
  /** The claim: `insert … on conflict do update … returning org_id, last_seq`. */
  readonly query: string;
  private readonly counts = new Map<string, number>();

  constructor(private readonly rows: readonly SequencedRow[]) {
    for (const row of rows) this.counts.set(row.orgId, (this.counts.get(row.orgId) ?? 0) + 1);
    const orgs = [...this.counts.keys()].sort();
    let values = '';
    for (const org of orgs) {
      if (!UUID_RE.test(org)) throw new Error(`not an org id: ${JSON.stringify(org)}`);
      values += (values ? ',' : '') + "('" + org + "'," + this.counts.get(org) + ')';
    }
    this.query = 'insert into event_seq (org_id, last_seq) values ' + values +
      ' on conflict (org_id) do update set last_seq = event_seq.last_seq + excluded.last_seq returning org_id, last_seq';
  }

  /** Numbers every row from the claim's result rows (org_id, last_seq as text). */
  assign(result: ReadonlyArray<ReadonlyArray<string | null>>): void {
    const next = new Map<string, number>();
    for (const [org, last] of result) next.set(org!, Number(last) - this.counts.get(org!)! + 1);
    if (next.size !== this.counts.size) throw new Error(`the sequence claim answered ${next.size} orgs, not ${this.counts.size}`);
    for (const row of this.rows) {
      const seq = next.get(row.orgId)!;
      row.seq = seq;
      next.set(row.orgId, seq + 1);
    }
  }
}
