import diagnostics_channel from 'node:diagnostics_channel';

/**
 * What webhook delivery reports, for whoever listens (src/metrics, API.md §8). Published only
 * when `hasSubscribers`. No endpoint, org or URL is in a message.
 */

/** The first attempt to send an event to an endpoint started, `lagSeconds` after the event was received. */
export interface FirstAttemptStarted {
  lagSeconds: number;
}

/** One attempt finished; `outcome` is what it led to: succeeded, failed (will retry) or dead. */
export interface AttemptFinished {
  outcome: 'succeeded' | 'failed' | 'dead';
  seconds: number;
}

export const firstAttemptStartedChannel = diagnostics_channel.channel('triggers:delivery:first-attempt-started');
export const attemptFinishedChannel = diagnostics_channel.channel('triggers:delivery:attempt-finished');
