import { isoMs } from '../ids.js';
import type { SendOutcome } from './transport.js';

/** One attempt as stored in webhook_deliveries.attempts and shown by GET …/deliveries. */
export function attemptJson(attemptedAt: number, outcome: SendOutcome, nextAttemptAtMs: number | null): string {
  return (
    '{"at":"' +
    isoMs(attemptedAt) +
    '","response_status":' +
    outcome.status +
    ',"latency_ms":' +
    outcome.latencyMs +
    ',"error":' +
    (outcome.error === null ? 'null' : JSON.stringify(outcome.error)) +
    ',"next_attempt_at":' +
    (nextAttemptAtMs === null ? 'null' : '"' + isoMs(nextAttemptAtMs) + '"') +
    '}'
  );
}

/**
 * Why a failed attempt disables its endpoint, or null: 410 Gone at once, or every attempt failed
 * for `disableAfterHours` (0 = never) since `failingSinceMs`, as stored.
 */
export function disableReason(
  failure: AttemptFailure,
  failingSinceMs: number,
  disableAfterHours: number,
): string | null {
  if (failure.status === 410) {
    return `The endpoint answered 410 Gone at ${isoMs(failure.atMs)}; fix it and PATCH {"enabled": true} to resume.`;
  }
  if (disableAfterHours > 0 && failure.atMs - failingSinceMs >= disableAfterHours * 3_600_000) {
    return `Every delivery attempt failed for ${disableAfterHours} hours (since ${isoMs(failingSinceMs)}); fix the endpoint and PATCH {"enabled": true} to resume.`;
  }
  return null;
}

/** A failed attempt as its endpoint's health sees it: when, and the answer's status (null: none came). */
export interface AttemptFailure {
  atMs: number;
  status: number | null;
}

/**
 * What a delivery's attempt came to, as the stream records it:
 * - `sent`: the request went out and `outcome` is what came back (or why nothing did). Counts
 *   for the endpoint's health (failing_since, disabling, probe mode).
 * - `expired`: a retry whose event retention dropped meanwhile; dead without a request, and
 *   no fault of the endpoint's.
 */
export type Attempt = { kind: 'sent'; outcome: SendOutcome } | { kind: 'expired' };

/** What an expired event's attempt entry says (its `error` shows in GET …/deliveries). */
export const EXPIRED_OUTCOME: SendOutcome = Object.freeze({
  ok: false,
  status: null,
  latencyMs: 0,
  error: 'event no longer retained',
  retryAfter: undefined,
});

/** The SendOutcome an attempt is written with. */
export function attemptOutcome(attempt: Attempt): SendOutcome {
  return attempt.kind === 'sent' ? attempt.outcome : EXPIRED_OUTCOME;
}
