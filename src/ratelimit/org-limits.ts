import { ORG_CHANGED_CHANNEL } from '../admin/service.js';
import type { Sql } from '../db/connect.js';
import { log } from '../log.js';

export interface OrgLimit {
  rate: number;
  burst: number;
}

// Fallback for a missed NOTIFY (the listening connection reconnecting): re-read known orgs' limits.
const LIMIT_POLL_MS = 1_000;

/**
 * Org limits as stored in `orgs`: read on first sight of an org, then kept current by the
 * org_changed NOTIFY that PATCH /v1/admin/orgs/{id} sends (every node listens), and by a poll.
 */
export class OrgLimitSource {
  private unlisten: (() => Promise<void>) | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private polling = false;

  constructor(
    private readonly sql: Sql,
    private readonly fallback: OrgLimit,
    /** Ids of the orgs whose limits matter to this process right now. */
    private readonly knownOrgs: () => Iterable<string>,
    private readonly onLimit: (orgId: string, limit: OrgLimit) => void,
  ) {}

  async start(): Promise<void> {
    const listener = await this.sql.listen(ORG_CHANGED_CHANNEL, (orgId) => {
      this.load(orgId).then(
        (limit) => this.onLimit(orgId, limit),
        (error) => log.warn({ err: error.message }, 'could not re-read org limits'),
      );
    });
    this.unlisten = listener.unlisten;
    this.pollTimer = setInterval(() => void this.poll(), LIMIT_POLL_MS);
    this.pollTimer.unref();
  }

  async stop(): Promise<void> {
    if (this.pollTimer) clearInterval(this.pollTimer);
    await this.unlisten?.().catch(() => {});
  }

  /** The org's limits; the configured defaults for an org that is not (or no longer) in the table. */
  async load(orgId: string): Promise<OrgLimit> {
    const [row] = await this.sql`select rate_limit_per_sec, burst from orgs where id = ${orgId}`;
    return row ? { rate: row.rate_limit_per_sec, burst: row.burst } : this.fallback;
  }

  private async poll(): Promise<void> {
    if (this.polling) return;
    const ids = [...this.knownOrgs()];
    if (ids.length === 0) return;
    this.polling = true;
    try {
      const rows = await this.sql`select id, rate_limit_per_sec, burst from orgs where id = any(${ids}::uuid[])`;
      for (const row of rows) this.onLimit(row.id, { rate: row.rate_limit_per_sec, burst: row.burst });
    } catch (error) {
      log.warn({ err: (error as Error).message }, 'could not re-read org limits');
    } finally {
      this.polling = false;
    }
  }
}
