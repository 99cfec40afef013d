/**
 * When to try a failed delivery again. The schedule (WEBHOOK_RETRY_SCHEDULE) lists the waits
 * after the 1st, 2nd, … failed attempt; past its end the delivery is dead.
 */

// A receiver may ask for more time with Retry-After, but not hold a delivery hostage for days.
export const RETRY_AFTER_CAP_MS = 6 * 3_600_000;
const JITTER = 0.2;
// An endpoint in probe mode (stream.ts) is tried again this long after its last attempt ended,
// doubling with every probe that failed, up to PROBE_MAX_MS.
export const PROBE_FIRST_MS = 1_000;
export const PROBE_MAX_MS = 30_000;

/**
 * The wait before the next attempt after the failure at `retryIndex` (0 = the first attempt),
 * or null when the schedule is exhausted. ±20% jitter spreads retries of a burst; a Retry-After
 * longer than the scheduled wait is honoured up to RETRY_AFTER_CAP_MS.
 */
export function retryDelayMs(
  schedule: readonly number[],
  retryIndex: number,
  retryAfterMs: number | null,
  random = Math.random,
): number | null {
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

/**
 * The wait before the next probe of an endpoint in probe mode, from the end of its last attempt,
 * after `probesFailed` failed probes: 1 s, 2 s, 4 s … up to PROBE_MAX_MS, with the retries' ±20%
 * jitter. A thousand hanging endpoints probed every second kept hundreds of sends stuck and
 * hundreds of timeouts a second to process, for nothing; and probes whose timeouts ended
 * together started together again, so they timed out in bursts every WEBHOOK_TIMEOUT_MS.
 */
export function probeDelayMs(probesFailed: number, random = Math.random): number {
  const base = Math.min(PROBE_MAX_MS, PROBE_FIRST_MS * 2 ** Math.min(probesFailed, 20));
  return Math.round(base * (1 - JITTER + 2 * JITTER * random()));
}
