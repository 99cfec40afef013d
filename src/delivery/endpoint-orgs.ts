import type { Sql } from '../db/connect.js';
import { log } from '../log.js';

/** NOTIFY channel: an org's webhook endpoints changed (payload: the org id), on any node. */
export const ENDPOINTS_CHANGED_CHANNEL = 'webhook_endpoints_changed';

// Fallback for a missed NOTIFY (the listening connection reconnecting): re-read the whole set.
// While a gain is missed, that org's events wait for the delivery processes' own poll
// (DELIVERY_POLL_MS), as they would after any lost wake-up.
const RELOAD_MS = 5_000;

/**
 * Which orgs have an enabled webhook endpoint, as an HTTP worker needs to know it: a flush wakes
 * the delivery processes only for those orgs. A firehose org (no endpoint) then costs no IPC at
 * all: each wake-up otherwise costs the worker, the primary and every delivery process
 * (docs/PERFORMANCE.md, "Wake-ups only for orgs with an endpoint").
 *
 * Wrong answers may only ever cost latency, never a delivery, and they lean towards waking:
 * - until the first load every org counts as having endpoints, and so does an org whose endpoints
 *   changed, until the next reload;
 * - an org gained without this worker knowing (before its NOTIFY arrives, or a missed NOTIFY
 *   found by a reload) is woken as soon as it is learned (`onGained`). That one wake-up covers
 *   every event of the org this worker committed while it did not know: they committed before it
 *   was sent, so the read it causes sees them.
 */
export class EndpointOrgs {
  private orgs: Set<string> | null = null;
  private reloading = false;
  private reloadAgain = false;
  /** Orgs noted while a reload was running: its snapshot may predate their change. */
  private notedDuringReload = new Set<string>();
  private reloadTimer: NodeJS.Timeout | null = null;
  private unlisten: (() => Promise<void>) | null = null;

  constructor(
    private readonly sql: Sql,
    /** Called for an org learned to have endpoints after the first load: wake its streams. */
    private readonly onGained: (orgId: string) => void,
    private readonly reloadMs = RELOAD_MS,
  ) {}

  async start(): Promise<void> {
    const listener = await this.sql.listen(ENDPOINTS_CHANGED_CHANNEL, (orgId) => this.noteChanged(orgId));
    this.unlisten = listener.unlisten;
    await this.reload();
    this.reloadTimer = setInterval(() => void this.reload(), this.reloadMs);
    this.reloadTimer.unref();
  }

  async stop(): Promise<void> {
    if (this.reloadTimer) clearInterval(this.reloadTimer);
    await this.unlisten?.().catch(() => {});
  }

  /** False only for an org known to have no enabled endpoint. */
  mayHaveEndpoints(orgId: string): boolean {
    return this.orgs === null || this.orgs.has(orgId);
  }

  /**
   * This process changed the org's endpoints: note it here at once. Every other process learns
   * it from the change's own NOTIFY, sent in its transaction (src/webhooks/service.ts).
   */
  async changedHere(orgId: string): Promise<void> {
    this.noteChanged(orgId);
  }

  /** The org's endpoints changed: it counts as having endpoints until a reload says otherwise. */
  private noteChanged(orgId: string): void {
    if (this.orgs !== null && !this.orgs.has(orgId)) {
      this.orgs.add(orgId);
      this.onGained(orgId);
    }
    if (this.reloading) this.notedDuringReload.add(orgId);
    void this.reload();
  }

  private async reload(): Promise<void> {
    if (this.reloading) {
      this.reloadAgain = true;
      return;
    }
    this.reloading = true;
    try {
      const rows = await this.sql`select distinct org_id from webhook_endpoints where enabled`;
      const next = new Set<string>();
      for (const row of rows) next.add(row.org_id as string);
      // Noted during this read: its snapshot may not show them yet; the read that follows will.
      for (const orgId of this.notedDuringReload) next.add(orgId);
      if (this.orgs !== null) for (const orgId of next) if (!this.orgs.has(orgId)) this.onGained(orgId);
      this.orgs = next;
    } catch (error) {
      log.warn(
        { err: (error as Error).message },
        'could not read which orgs have webhook endpoints; waking delivery as before',
      );
    } finally {
      this.reloading = false;
      this.notedDuringReload.clear();
      if (this.reloadAgain) {
        this.reloadAgain = false;
        void this.reload();
      }
    }
  }
}
