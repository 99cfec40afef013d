import { checkPath, waitForArrivals } from './arrivals.js';
import { now, sleep } from './clock.js';
import { measured, type ScenarioContext } from './measure.js';
import { createEndpoint, createOrg } from './org-setup.js';
import { fmt } from './output.js';
import { payloadFor } from './payload.js';
import { failures, percentiles, type Row } from './results.js';
import { LATENCY_INTERVAL_MS, LATENCY_SECONDS, LATENCY_TIMEOUT_MS } from './settings.js';

/** One POST /v1/events every LATENCY_INTERVAL_MS, 1 endpoint: arrival − 202 against the product target. */
export async function latencyScenario(ctx: ScenarioContext): Promise<Row> {
  const key = await createOrg(ctx.server.url, 'bench latency');
  const pathname = '/e/latency';
  await createEndpoint(ctx.server.url, key, ctx.receiver.url(pathname));
  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
  return measured(ctx, async (markEnd) => {
    const answeredAt = new Map<string, number>();
    const ingestMs: number[] = [];
    let errors = 0;
    const count = Math.round((LATENCY_SECONDS * 1000) / LATENCY_INTERVAL_MS);
    const started = now();
    const sends: Promise<void>[] = [];
    // Open loop: the i-th event is sent at started + i × interval, whatever the previous did.
    for (let i = 0; i < count; i++) {
      const due = started + i * LATENCY_INTERVAL_MS;
      const wait = due - now();
      if (wait > 0) await sleep(wait);
      sends.push(
        (async () => {
          const sent = now();
          const response = await ctx.ingest.request({
            path: '/v1/events',
            method: 'POST',
            headers,
            body: JSON.stringify({ type: 'bench.latency', payload: payloadFor(i) }),
          });
          const text = await response.body.text();
          const at = now();
          if (response.statusCode !== 202) {
            errors++;
            return;
          }
          answeredAt.set((JSON.parse(text) as { id: string }).id, at);
          ingestMs.push(at - sent);
        })().catch(() => {
          errors++;
        }),
      );
    }
    await Promise.all(sends);
    const firstAnswer = Math.min(...answeredAt.values());
    const arrival = await waitForArrivals(ctx.receiver, [pathname], answeredAt.size, LATENCY_TIMEOUT_MS);
    markEnd();
    const check = await checkPath(ctx.receiver, pathname, answeredAt);
    const lastArrival = Math.max(0, ...check.dump.at);
    const ok = arrival.complete && check.problems.length === 0 && errors === 0;
    const lag = percentiles(check.lags);
    const within50 = check.lags.filter((l) => l <= 50).length;
    const notes = [
      `${fmt(answeredAt.size)} events, one every ${LATENCY_INTERVAL_MS} ms${errors ? `, ${errors} NOT answered 202` : ''}; 202 latency p50 ${fmt(percentiles(ingestMs).p50, 1)} ms p99 ${fmt(percentiles(ingestMs).p99, 1)} ms`,
      `first attempt within 50 ms of the 202: ${fmt((100 * within50) / Math.max(1, check.lags.length), 1)}% (target: all, median ≤ 20 ms: ${lag.p50 <= 20 && lag.max <= 50 ? 'met' : 'not met'}); duplicates: ${check.dump.requests - check.dump.ids.length}`,
      ...check.problems,
    ];
    if (!ok) failures.push(`latency: ${errors} ingest errors; ${check.problems.join('; ') || 'incomplete'}`);
    return {
      scenario: 'latency',
      deliveries: check.lags.length,
      seconds: (lastArrival - firstAnswer) / 1000,
      perSecond: check.lags.length / ((lastArrival - firstAnswer) / 1000),
      lag,
      ok,
      notes,
    };
  });
}
