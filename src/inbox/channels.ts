import diagnostics_channel from 'node:diagnostics_channel';
import { ApiError } from '../errors.js';

/** What the consumption side reports, for whoever listens (src/metrics). */

/**
 * The database operations of consumption: a page of the inbox, an acknowledgement UPDATE; a
 * consumer group's receive, its ack, and its other changes (nack, extend, redrive, seek).
 */
export type InboxOperation = 'inbox_read' | 'ack' | 'group_receive' | 'group_ack' | 'group_change';

export interface InboxQueryFinished {
  operation: InboxOperation;
  seconds: number;
  /** False: the query failed (storage unavailable, statement timeout, ...). */
  ok: boolean;
}

export const inboxQueryChannel = diagnostics_channel.channel('triggers:inbox:query-finished');

/**
 * Runs one query and, when someone listens, publishes how long it took and whether it failed. An
 * ApiError (a group not found, a conflict) is the request's answer, not a failed query: not published.
 */
export function timedInboxQuery<T>(operation: InboxOperation, run: () => Promise<T>): Promise<T> {
  if (!inboxQueryChannel.hasSubscribers) return run();
  const started = performance.now();
  const finished = (ok: boolean) =>
    inboxQueryChannel.publish({
      operation,
      seconds: (performance.now() - started) / 1000,
      ok,
    } satisfies InboxQueryFinished);
  return run().then(
    (result) => {
      finished(true);
      return result;
    },
    (error: unknown) => {
      if (!(error instanceof ApiError)) finished(false);
      throw error;
    },
  );
}
