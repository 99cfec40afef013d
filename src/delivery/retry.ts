/**
 * When to try a failed delivery again. The schedule (WEBHOOK_RETRY_SCHEDULE) lists the waits
 * after the 1st, 2nd, … failed attempt; past its end the delivery is dead.
 */

// A receiver may ask for more time with Retry-After, but not hold a delivery hostage for days.
export const RETRY_AFTER_CAP_MS = 6 * 3_600_000;
const JITTER = 0.2;

/**
 * The wait before the next attempt after the failure at `retryIndex` (0 = the first attempt),
 * or null when the schedule is exhausted. ±20% jitter spreads retries of a burst; a Retry-After
 * longer than the scheduled wait is honoured up to RETRY_AFTER_CAP_MS.
 */
export function retryDelayMs(schedule: readonly number[], retryIndex: number, retryAfterMs: number | null, random = Math.random): number | null {
  if (retryIndex >= schedule.length) return null;
  const base = schedule[retryIndex]!;
  const jittered = Math.round(base * (1 - JITTER + 2 * JITTER * random()));
  if (retryAfterMs === null || retryAfterMs <= jittered) return jittered;
  return Math.min(retryAfterMs, Math.max(RETRY_AFTER_CAP_MS, jittered));
}

/** Retry-After as delta-seconds or an HTTP date, in milliseconds from `now`; null when absent or unreadable. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | null {
  const raw = Array.isArray(value) ? value[0] : value;
  if (raw === undefined || raw === '') return null;
  if (/^\d+$/.test(raw.trim())) return Number(raw.trim()) * 1000;
  const at = Date.parse(raw);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}
