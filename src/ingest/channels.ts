import diagnostics_channel from 'node:diagnostics_channel';

/**
 * What ingestion reports, for whoever listens (src/metrics). Published only when
 * `hasSubscribers`; subscribers run synchronously on the request path and must be cheap.
 * (The commit signal that wakes the delivery processes is a callback: ./committed.ts.)
 */

/** One group-commit flush finished. */
export interface FlushFinished {
  /** Events in the batch, duplicates included. */
  rows: number;
  seconds: number;
  /** False: the flush failed or timed out and its events were answered 503. */
  ok: boolean;
  /** Events committed; the rest of a successful batch were duplicates. 0 when not ok. */
  stored: number;
}

/** One item of POST /v1/events/batch refused for its content. */
export interface BatchItemRejected {
  /** The error code from API.md (validation_failed, ...). */
  code: string;
}

/** One charge of an org's rate limit, including a charge refused with 429. */
export interface RateLimitCharged {
  seconds: number;
}

export const flushFinishedChannel = diagnostics_channel.channel('triggers:ingest:flush-finished');
export const batchItemRejectedChannel = diagnostics_channel.channel('triggers:ingest:batch-item-rejected');
export const rateLimitChargedChannel = diagnostics_channel.channel('triggers:ingest:rate-limit-charged');

export function publishFlushFinished(rows: number, startedAt: number, ok: boolean, stored: number): void {
  if (!flushFinishedChannel.hasSubscribers) return;
  flushFinishedChannel.publish({
    rows,
    seconds: (performance.now() - startedAt) / 1000,
    ok,
    stored,
  } satisfies FlushFinished);
}
