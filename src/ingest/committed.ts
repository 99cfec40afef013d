import diagnostics_channel from 'node:diagnostics_channel';

/**
 * Published after each flush that stored events, with the orgs they belong to. The HTTP worker
 * forwards it to the delivery processes (src/delivery/wake.ts) so webhooks go out without
 * waiting for a poll. Publishing costs nothing while nobody subscribes.
 */
export interface EventsCommitted {
  orgIds: Set<string>;
}

export const eventsCommittedChannel = diagnostics_channel.channel('triggers:ingest:committed');

export function publishCommitted(events: Iterable<{ orgId: string }>): void {
  if (!eventsCommittedChannel.hasSubscribers) return;
  const orgIds = new Set<string>();
  for (const event of events) orgIds.add(event.orgId);
  if (orgIds.size > 0) eventsCommittedChannel.publish({ orgIds } satisfies EventsCommitted);
}
