import assert from 'node:assert/strict';
import { Pool } from 'undici';

export interface LoadResult {
  accepted: number;
  limited: number;
  /** Any status other than 202 and 429, with counts (a healthy run has none). */
  other: Record<number, number>;
  /** From the first request sent to the last response received. */
  elapsedMs: number;
  /** A 429's headers, for inspection. */
  sample429: Record<string, string> | null;
}

export interface LoadTarget {
  url: string;
  /** Keep-alive connections to open: 1 pins all load to one worker (SO_REUSEPORT balances per connection). */
  connections: number;
}

const BODY = JSON.stringify({ type: 'load.test', payload: { n: 1 } });

/**
 * Sends single events as fast as the targets answer, for `durationMs`, one request at a time per
 * connection, and counts outcomes. The window is measured, not assumed: compare counts
 * against `elapsedMs`, never against the nominal duration.
 */
export async function driveEvents(targets: LoadTarget[], key: string, durationMs: number): Promise<LoadResult> {
  const result: LoadResult = { accepted: 0, limited: 0, other: {}, elapsedMs: 0, sample429: null };
  const pools = targets.map((target) => new Pool(target.url, { connections: target.connections }));
  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
  const started = performance.now();
  const stopAt = started + durationMs;
  const lane = async (pool: Pool) => {
    while (performance.now() < stopAt) {
      const response = await pool.request({ path: '/v1/events', method: 'POST', headers, body: BODY });
      await response.body.text();
      if (response.statusCode === 202) result.accepted++;
      else if (response.statusCode === 429) {
        result.limited++;
        result.sample429 ??= response.headers as Record<string, string>;
      } else result.other[response.statusCode] = (result.other[response.statusCode] ?? 0) + 1;
    }
  };
  try {
    await Promise.all(pools.flatMap((pool, i) => Array.from({ length: targets[i]!.connections }, () => lane(pool))));
  } finally {
    result.elapsedMs = performance.now() - started;
    await Promise.all(pools.map((pool) => pool.close()));
  }
  return result;
}

/**
 * A token bucket that starts full admits at most burst + rate x elapsed. The tolerance (10%) is
 * about rate accuracy, so it applies to that whole expectation; the caller also checks that the
 * load really exceeded the limit, or the count would only measure the load generator.
 */
export function expectedAccepted(rate: number, burst: number, elapsedMs: number): number {
  return burst + (rate * elapsedMs) / 1000;
}

/**
 * The accuracy assertion the rate-limit tests share: only 202s and 429s, load that really exceeded
 * the limit (or the count would measure the load generator), and accepted within ±10% of
 * burst + rate × the measured window.
 */
export function assertAccurate(result: LoadResult, rate: number, burst: number, label: string): void {
  const expected = expectedAccepted(rate, burst, result.elapsedMs);
  const summary = `${label}: accepted ${result.accepted}, limited ${result.limited}, other ${JSON.stringify(result.other)} in ${result.elapsedMs.toFixed(0)} ms; expected ${expected.toFixed(0)}`;
  console.log(`# ${summary}`);
  assert.deepEqual(result.other, {}, `only 202 and 429 expected. ${summary}`);
  assert.ok(result.limited > result.accepted / 2, `load did not exceed the limit. ${summary}`);
  assert.ok(Math.abs(result.accepted - expected) <= expected * 0.1, `outside +-10%. ${summary}`);
}

/** `count` requests, each on a new connection, so they spread over the workers. */
export async function spreadCalls(
  url: string,
  count: number,
  method: string,
  path: string,
  key: string,
  body?: unknown,
) {
  return Promise.all(
    Array.from({ length: count }, async () => {
      const pool = new Pool(url, { connections: 1 });
      try {
        const response = await pool.request({
          path,
          method: method as 'GET',
          body: body === undefined ? undefined : JSON.stringify(body),
          headers: {
            authorization: `Bearer ${key}`,
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          },
        });
        const text = await response.body.text();
        return {
          status: response.statusCode,
          headers: response.headers as Record<string, string>,
          body: text ? JSON.parse(text) : null,
        };
      } finally {
        await pool.close();
      }
    }),
  );
}
