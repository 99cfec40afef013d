import { checkPath, waitForArrivals } from './arrivals.js';
import { ingestBurst } from './ingest-burst.js';
import { measured, type ScenarioContext } from './measure.js';
import { createEndpoint, createOrg, deleteEndpoint } from './org-setup.js';
import { fmt } from './output.js';
import { failures, percentiles, type Row } from './results.js';
import { SCENARIO_TIMEOUT_MS } from './settings.js';

export interface ThroughputOptions {
  name: string;
  events: number;
  /** Receiver paths of the endpoints that must get every event. */
  healthy: string[];
  /** Receiver paths (/hang/…, /fail/…) of endpoints subscribed beside them: only reported. */
  extra?: string[];
  ratioTo?: { label: string; perSecond: number };
  /** Delivery controls of the healthy endpoints (e.g. `{ ordering: 'key' }`). */
  controls?: Record<string, unknown>;
  /** Events carry this many distinct ordering keys, in turn. */
  orderingKeys?: number;
}

/** One or more healthy endpoints, a burst; optional extra (hang/fail) endpoints are only reported. */
export async function throughputScenario(ctx: ScenarioContext, options: ThroughputOptions): Promise<Row> {
  const key = await createOrg(ctx.server.url, `bench ${options.name}`);
  // The failing and hanging endpoints first, so that an engine that serves endpoints in order
  // meets them before the healthy one.
  const extraIds: string[] = [];
  for (const p of options.extra ?? []) extraIds.push(await createEndpoint(ctx.server.url, key, ctx.receiver.url(p)));
  for (const p of options.healthy) await createEndpoint(ctx.server.url, key, ctx.receiver.url(p), options.controls);
  try {
    return await measured(ctx, async (markEnd) => {
      const ingested = await ingestBurst(
        ctx.ingest,
        key,
        `bench.${options.name.replace(/[^a-z0-9]+/gi, '.')}`,
        options.events,
        options.orderingKeys,
      );
      const accepted = ingested.answeredAt.size;
      const notes: string[] = [];
      const ingestSeconds = (ingested.lastAnswer - ingested.startedAt) / 1000;
      notes.push(
        `ingest: ${fmt(accepted)} accepted${ingested.rejected ? `, ${ingested.rejected} NOT accepted` : ''} in ${fmt(ingestSeconds, 2)} s = ${fmt(accepted / ingestSeconds)} events/s`,
      );
      const arrival = await waitForArrivals(ctx.receiver, options.healthy, accepted, SCENARIO_TIMEOUT_MS);
      markEnd();
      let ok = arrival.complete && ingested.rejected === 0;
      if (!arrival.complete) {
        const got = options.healthy.map((p) => `${p} ${arrival.counts[p]!.distinct}/${accepted}`).join(', ');
        notes.push(`TIMED OUT after ${SCENARIO_TIMEOUT_MS / 1000} s: arrived ${got}`);
        failures.push(`${options.name}: not every event arrived within ${SCENARIO_TIMEOUT_MS / 1000} s (${got})`);
      }
      if (ingested.rejected) failures.push(`${options.name}: ${ingested.rejected} events not accepted`);
      const lags: number[] = [];
      let lastArrival = 0;
      let delivered = 0;
      let duplicates = 0;
      for (const p of options.healthy) {
        const check = await checkPath(ctx.receiver, p, ingested.answeredAt);
        lags.push(...check.lags);
        delivered += check.lags.length;
        duplicates += check.dump.requests - check.dump.ids.length;
        for (const at of check.dump.at) lastArrival = Math.max(lastArrival, at);
        if (check.problems.length) {
          ok = false;
          if (arrival.complete) failures.push(...check.problems.map((problem) => `${options.name}: ${problem}`));
          notes.push(...check.problems);
        }
      }
      const seconds = (lastArrival - ingested.firstAnswer) / 1000;
      notes.push(
        `every endpoint got every event: ${ok ? 'yes' : 'NO'} (${options.healthy.length} endpoint${options.healthy.length > 1 ? 's' : ''} × ${fmt(accepted)} events); duplicate deliveries: ${duplicates}`,
      );
      if (options.extra?.length) {
        const counts = await ctx.receiver.counts('/');
        notes.push(
          `meanwhile (ignored): ${options.extra.map((p) => `${p} got ${counts[p]?.requests ?? 0} requests`).join(', ')}`,
        );
      }
      const perSecond = delivered / seconds;
      const row: Row = {
        scenario: options.name,
        deliveries: delivered,
        seconds,
        perSecond,
        lag: percentiles(lags),
        ok,
        notes,
        ...(options.ratioTo ? { ratio: perSecond / options.ratioTo.perSecond, ratioLabel: options.ratioTo.label } : {}),
      };
      return row;
    });
  } finally {
    // The failing and hanging endpoints would keep the engine busy (retries, timeouts) in whatever
    // runs next. Deleted only after this scenario's counters were read: the delete cascades to
    // their delivery rows. The healthy endpoints stay: idle, and their org sends nothing more.
    for (const id of extraIds) await deleteEndpoint(ctx.server.url, key, id).catch(() => {});
  }
}
