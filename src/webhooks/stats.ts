import type { Sql } from '../db/connect.js';
import { minuteOf } from '../delivery/endpoint-stats.js';
import { isoMs } from '../ids.js';
import { findEndpoint, invalid, WEBHOOKS, type EndpointFamily } from './service.js';

/**
 * GET /v1/webhooks/{id}/stats and /v1/destinations/{id}/stats (API.md §5): an endpoint's
 * attempts per minute over a window, from endpoint_stats (sql/014_endpoint_stats.sql), which the
 * delivery processes fill as they commit attempts. A view reads at most one row per minute of
 * its window (a range of the primary key), whatever the endpoint's traffic.
 */

/** The windows a caller may ask for, in minutes (one bucket a minute). */
export const STATS_WINDOWS = { '15m': 15, '1h': 60, '6h': 360, '24h': 1440 } as const;
export type StatsWindow = keyof typeof STATS_WINDOWS;
export const DEFAULT_STATS_WINDOW: StatsWindow = '1h';
const MINUTE_MS = 60_000;

export interface StatsCounts {
  succeeded: number;
  failed: number;
  dead: number;
  first_attempts: number;
  lag_ms_avg: number | null;
  lag_ms_max: number | null;
  latency_ms_avg: number | null;
}

export interface StatsBucket extends StatsCounts {
  at: string;
}

export interface EndpointStatsView {
  window: StatsWindow;
  bucket_seconds: 60;
  from: string;
  to: string;
  buckets: StatsBucket[];
  totals: StatsCounts;
}

/** One endpoint_stats row as read. */
export interface StatsRow {
  minuteMs: number;
  attempts: number;
  succeeded: number;
  failed: number;
  dead: number;
  firstAttempts: number;
  lagMsSum: number;
  lagMsMax: number | null;
  latencyMsSum: number;
}

export function parseStatsWindow(query: string): StatsWindow {
  const window = new URLSearchParams(query).get('window') ?? DEFAULT_STATS_WINDOW;
  if (!Object.hasOwn(STATS_WINDOWS, window))
    invalid([{ field: 'window', message: `must be one of ${Object.keys(STATS_WINDOWS).join(', ')}` }]);
  return window as StatsWindow;
}

/** The window's first and last minute: the last is the one `nowMs` is in (still filling). */
export function statsRange(window: StatsWindow, nowMs: number): { firstMs: number; lastMs: number } {
  const lastMs = minuteOf(nowMs);
  return { firstMs: lastMs - (STATS_WINDOWS[window] - 1) * MINUTE_MS, lastMs };
}

/** The rows of one endpoint between two minutes, both included: a primary-key range. */
export function statsRowsQuery(sql: Sql, orgId: string, endpointId: string, firstMs: number, lastMs: number) {
  return sql`
    select minute, attempts, succeeded, failed, dead, first_attempts, lag_ms_sum, lag_ms_max, latency_ms_sum
    from endpoint_stats
    where org_id = ${orgId} and endpoint_id = ${endpointId}
      and minute >= ${new Date(firstMs)} and minute <= ${new Date(lastMs)}
    order by minute`;
}

export async function endpointStats(
  sql: Sql,
  orgId: string,
  id: string,
  query: string,
  family: EndpointFamily = WEBHOOKS,
  nowMs = Date.now(),
): Promise<EndpointStatsView> {
  const window = parseStatsWindow(query);
  await findEndpoint(sql, orgId, id, family);
  const { firstMs, lastMs } = statsRange(window, nowMs);
  const rows = await statsRowsQuery(sql, orgId, id, firstMs, lastMs);
  return statsView(
    window,
    firstMs,
    rows.map((row) => ({
      minuteMs: (row.minute as Date).getTime(),
      attempts: row.attempts as number,
      succeeded: row.succeeded as number,
      failed: row.failed as number,
      dead: row.dead as number,
      firstAttempts: row.first_attempts as number,
      lagMsSum: Number(row.lag_ms_sum),
      lagMsMax: row.lag_ms_max === null ? null : Number(row.lag_ms_max),
      latencyMsSum: Number(row.latency_ms_sum),
    })),
  );
}

/** Every minute of the window, oldest first, zeros where nothing was attempted; and the totals. */
export function statsView(window: StatsWindow, firstMs: number, rows: readonly StatsRow[]): EndpointStatsView {
  const minutes = STATS_WINDOWS[window];
  const byMinute = new Map(rows.map((row) => [row.minuteMs, row]));
  const total = emptyRow(firstMs);
  const buckets: StatsBucket[] = [];
  for (let i = 0; i < minutes; i++) {
    const minuteMs = firstMs + i * MINUTE_MS;
    const row = byMinute.get(minuteMs) ?? emptyRow(minuteMs);
    buckets.push({ at: isoMs(minuteMs), ...counts(row) });
    total.attempts += row.attempts;
    total.succeeded += row.succeeded;
    total.failed += row.failed;
    total.dead += row.dead;
    total.firstAttempts += row.firstAttempts;
    total.lagMsSum += row.lagMsSum;
    total.latencyMsSum += row.latencyMsSum;
    if (row.lagMsMax !== null) total.lagMsMax = Math.max(total.lagMsMax ?? 0, row.lagMsMax);
  }
  return {
    window,
    bucket_seconds: 60,
    from: isoMs(firstMs),
    to: isoMs(firstMs + minutes * MINUTE_MS),
    buckets,
    totals: counts(total),
  };
}

function emptyRow(minuteMs: number): StatsRow {
  return {
    minuteMs,
    attempts: 0,
    succeeded: 0,
    failed: 0,
    dead: 0,
    firstAttempts: 0,
    lagMsSum: 0,
    lagMsMax: null,
    latencyMsSum: 0,
  };
}

function counts(row: StatsRow): StatsCounts {
  return {
    succeeded: row.succeeded,
    failed: row.failed,
    dead: row.dead,
    first_attempts: row.firstAttempts,
    lag_ms_avg: row.firstAttempts === 0 ? null : tenths(row.lagMsSum / row.firstAttempts),
    lag_ms_max: row.firstAttempts === 0 ? null : row.lagMsMax,
    latency_ms_avg: row.attempts === 0 ? null : tenths(row.latencyMsSum / row.attempts),
  };
}

const tenths = (x: number) => Math.round(x * 10) / 10;
