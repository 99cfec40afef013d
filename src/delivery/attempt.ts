import { isoMs } from '../ids.js';
import type { SendOutcome } from './sender.js';

/** One attempt as stored in webhook_deliveries.attempts and shown by GET …/deliveries. */
export function attemptJson(attemptedAt: number, outcome: SendOutcome, nextAttemptAtMs: number | null): string {
  return '{"at":"' + isoMs(attemptedAt) + '","response_status":' + outcome.status + ',"latency_ms":' + outcome.latencyMs +
    ',"error":' + (outcome.error === null ? 'null' : JSON.stringify(outcome.error)) +
    ',"next_attempt_at":' + (nextAttemptAtMs === null ? 'null' : '"' + isoMs(nextAttemptAtMs) + '"') + '}';
}

/**
 * Why a failed attempt disables its endpoint, or null: 410 Gone at once, or every attempt failed
 * for `disableAfterHours` (0 = never) since `failingSinceMs`, as stored.
 */
export function disableReason(outcome: SendOutcome, attemptedAt: number, failingSinceMs: number, disableAfterHours: number): string | null {
  if (outcome.status === 410) {
    return `The endpoint answered 410 Gone at ${isoMs(attemptedAt)}; fix it and PATCH {"enabled": true} to resume.`;
  }
  if (disableAfterHours > 0 && attemptedAt - failingSinceMs >= disableAfterHours * 3_600_000) {
    return `Every delivery attempt failed for ${disableAfterHours} hours (since ${isoMs(failingSinceMs)}); fix the endpoint and PATCH {"enabled": true} to resume.`;
  }
  return null;
}
