import diagnostics_channel from 'node:diagnostics_channel';

/** What the consumption side reports, for whoever listens (src/metrics). */

/** The database operations of consumption: a page of the inbox, an acknowledgement UPDATE. */
export type InboxOperation = 'inbox_read' | 'ack';

export interface InboxQueryFinished {
  operation: InboxOperation;
  seconds: number;
  /** False: the query failed (storage unavailable, statement timeout, ...). */
  ok: boolean;
}

export const inboxQueryChannel = diagnostics_channel.channel('triggers:inbox:query-finished');

/** Runs one query and, when someone listens, publishes how long it took and whether it failed. */
export function timedInboxQuery<T>(operation: InboxOperation, run: () => Promise<T>): Promise<T> {
  if (!inboxQueryChannel.hasSubscribers) return run();
  const started = performance.now();
  const finished = (ok: boolean) =>
    inboxQueryChannel.publish({ operation, seconds: (performance.now() - started) / 1000, ok } satisfies InboxQueryFinished);
  return run().then(
    (result) => { finished(true); return result; },
    (error: unknown) => { finished(false); throw error; },
  );
}
