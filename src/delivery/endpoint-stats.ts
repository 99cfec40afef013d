/**
 * Per-endpoint delivery stats by minute (sql/014_endpoint_stats.sql): what one batch of the
 * progress writer adds to each (endpoint, minute) row. Pure, so the writer's cost is one map
 * lookup per attempt and one row per endpoint and minute per batch.
 */

const MINUTE_MS = 60_000;

/** What an attempt contributes, as the progress writer's record carries it. */
export interface StatsInput {
  orgId: string;
  endpointId: string;
  status: 'succeeded' | 'failed' | 'dead';
  /** When the attempt started (its `at` in the attempt log): picks the minute. */
  attemptedAtMs: number;
  latencyMs: number;
  /** The event's first attempt: its lag (start − the event's received_at) is counted. */
  firstAttempt: boolean;
  eventReceivedAtMs: number;
}

/** The increments of one endpoint_stats row. */
export interface StatsDelta {
  orgId: string;
  endpointId: string;
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

export function minuteOf(ms: number): number {
  return ms - (((ms % MINUTE_MS) + MINUTE_MS) % MINUTE_MS);
}

/**
 * One delta per (endpoint, minute) present in `inputs`, sorted by endpoint then minute: two
 * writers upserting the same rows lock them in one order, so they wait rather than deadlock.
 */
export function aggregateStats(inputs: readonly StatsInput[]): StatsDelta[] {
  const byKey = new Map<string, StatsDelta>();
  // A batch is mostly runs of one endpoint's attempts in one minute: those skip the map.
  let delta: StatsDelta | null = null;
  for (const input of inputs) {
    const minuteMs = minuteOf(input.attemptedAtMs);
    if (delta === null || delta.endpointId !== input.endpointId || delta.minuteMs !== minuteMs) {
      const key: string = input.endpointId + minuteMs;
      delta = byKey.get(key) ?? null;
      if (delta === null) {
        delta = {
          orgId: input.orgId,
          endpointId: input.endpointId,
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
        byKey.set(key, delta);
      }
    }
    delta.attempts++;
    delta[input.status]++;
    delta.latencyMsSum += Math.max(0, Math.round(input.latencyMs));
    if (input.firstAttempt) {
      // Never negative: received_at comes from an HTTP worker, perhaps on another node's clock.
      const lagMs = Math.max(0, Math.round(input.attemptedAtMs - input.eventReceivedAtMs));
      delta.firstAttempts++;
      delta.lagMsSum += lagMs;
      delta.lagMsMax = delta.lagMsMax === null ? lagMs : Math.max(delta.lagMsMax, lagMs);
    }
  }
  return [...byKey.values()].sort((a, b) =>
    a.endpointId === b.endpointId ? a.minuteMs - b.minuteMs : a.endpointId < b.endpointId ? -1 : 1,
  );
}

/** The deltas as the JSON text the writer's upsert reads with json_to_recordset. */
export function statsJson(deltas: readonly StatsDelta[]): string {
  return JSON.stringify(
    deltas.map((d) => ({
      o: d.orgId,
      e: d.endpointId,
      m: new Date(d.minuteMs).toISOString(),
      n: d.attempts,
      s: d.succeeded,
      f: d.failed,
      x: d.dead,
      fa: d.firstAttempts,
      ls: d.lagMsSum,
      lm: d.lagMsMax,
      ts: d.latencyMsSum,
    })),
  );
}
