/**
 * Hears, after each flush that stored events, the orgs they belong to. The HTTP app passes one to
 * the batcher (src/cluster/http-app.ts) to wake the delivery processes (src/delivery/wake.ts), so
 * webhooks go out without waiting for a poll. A plain callback, not a diagnostics channel: it is
 * control flow, and the channels (./channels.ts) are for observation only.
 */
export type CommittedListener = (orgIds: ReadonlySet<string>) => void;

/** Tells `listener` the orgs of `events` that were just committed (nothing when there are none). */
export function announceCommitted(listener: CommittedListener | null, events: Iterable<{ orgId: string }>): void {
  if (listener === null) return;
  const orgIds = new Set<string>();
  for (const event of events) orgIds.add(event.orgId);
  if (orgIds.size > 0) listener(orgIds);
}
