import type { ScenarioContext } from './measure.js';
import { createEndpoint, createOrg, deleteEndpoint } from './org-setup.js';
import { fmt, say } from './output.js';
import { failures } from './results.js';
import { sleep } from './clock.js';
import { ingestBurst } from './ingest-burst.js';
import { waitForArrivals } from './arrivals.js';
import {
  NOISY_ENDPOINTS,
  NOISY_EVENTS,
  NOISY_STUCK_EVENTS,
  SCENARIO_TIMEOUT_MS,
  WEBHOOK_TIMEOUT_MS,
} from './settings.js';
import { throughputScenario } from './throughput-scenario.js';

// Endpoint creations and deletions at once: a thousand one after the other would take most of the scenario.
const SETUP_CONCURRENCY = 16;

async function inTurns<T>(items: T[], each: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: SETUP_CONCURRENCY }, async () => {
      while (next < items.length) await each(items[next++]!);
    }),
  );
}

/**
 * Noisy neighbour: org B's one healthy endpoint alone, then beside org A's NOISY_ENDPOINTS
 * endpoints whose receiver holds every request open until the sender's timeout (WEBHOOK_TIMEOUT_MS),
 * then alone again. Org A has far more sends wanted than the process's slots (DELIVERY_MAX_IN_FLIGHT,
 * 1 024): it holds its share of them stuck the whole time. B's deliveries/s beside A against the
 * mean of its two runs alone must be ≥ 0.9 (src/delivery/slot-shares.ts).
 */
export async function noisyScenario(ctx: ScenarioContext): Promise<void> {
  // Run on its own (BENCH_SCENARIOS=noisy) the server is cold, and its first burst was the slowest
  // of the three by up to half (JIT warm-up): a burst first, not measured.
  say(`\nnoisy neighbour: warm-up, ${fmt(NOISY_EVENTS)} events to an endpoint of its own, not measured`);
  const warmKey = await createOrg(ctx.server.url, 'bench noisy warm-up');
  await createEndpoint(ctx.server.url, warmKey, ctx.receiver.url('/e/noisy-warm-up'));
  const warm = await ingestBurst(ctx.ingest, warmKey, 'bench.noisy.warmup', NOISY_EVENTS);
  await waitForArrivals(ctx.receiver, ['/e/noisy-warm-up'], warm.answeredAt.size, SCENARIO_TIMEOUT_MS);

  say(`\nnoisy neighbour: org B's healthy endpoint alone, ${fmt(NOISY_EVENTS)} events`);
  const alone = await throughputScenario(ctx, {
    name: 'noisy B alone',
    events: NOISY_EVENTS,
    healthy: ['/e/noisy-alone'],
  });

  say(`\nnoisy neighbour: org A, ${fmt(NOISY_ENDPOINTS)} endpoints that hang, ${NOISY_STUCK_EVENTS} events each`);
  const keyA = await createOrg(ctx.server.url, 'bench noisy A');
  const started = Date.now();
  const ids: string[] = [];
  await inTurns(
    Array.from({ length: NOISY_ENDPOINTS }, (_, i) => i),
    async (i) => {
      ids.push(await createEndpoint(ctx.server.url, keyA, ctx.receiver.url(`/hang/noisy-${i}`)));
    },
  );
  say(`  ${fmt(ids.length)} endpoints created in ${fmt((Date.now() - started) / 1000, 1)} s`);
  try {
    await ingestBurst(ctx.ingest, keyA, 'bench.noisy.a', NOISY_STUCK_EVENTS);
    // Measured in the steady state of a noisy neighbour: org A holds its share of the process
    // (half of 1 024, alone) stuck at its receiver, and its thousand streams have read their
    // events (their first reads take seconds: ingesting them is not what this scenario measures).
    const deadline = Date.now() + 30_000;
    let hanging = 0;
    for (;;) {
      const counts = await ctx.receiver.counts('/hang/noisy-');
      hanging = Object.values(counts).reduce((sum, c) => sum + c.requests, 0);
      if (
        (hanging >= Math.min(500, NOISY_ENDPOINTS / 2) && Object.keys(counts).length >= NOISY_ENDPOINTS * 0.5) ||
        Date.now() > deadline
      )
        break;
      await sleep(100);
    }
    await sleep(1_000);
    say(`  org A has ${fmt(hanging)} requests hanging at its receiver`);

    say(`\nnoisy neighbour: org B's healthy endpoint beside org A`);
    const noisy = await throughputScenario(ctx, {
      name: 'noisy B beside A',
      events: NOISY_EVENTS,
      healthy: ['/e/noisy-beside'],
      ratioTo: { label: 'of alone', perSecond: alone.perSecond },
    });
    const counts = await ctx.receiver.counts('/hang/noisy-');
    noisy.notes.push(
      `meanwhile org A's ${fmt(NOISY_ENDPOINTS)} hanging endpoints got ${fmt(Object.values(counts).reduce((sum, c) => sum + c.requests, 0))} requests in all`,
    );

    say(`\nnoisy neighbour: org B's healthy endpoint alone again (org A's endpoints deleted)`);
    await inTurns(ids, (id) => deleteEndpoint(ctx.server.url, keyA, id).catch(() => {}));
    ids.length = 0;
    // Their sends in flight end at their timeout, and the streams are dropped at the next lease sync.
    await sleep(WEBHOOK_TIMEOUT_MS + 2_000);
    const aloneAgain = await throughputScenario(ctx, {
      name: 'noisy B alone again',
      events: NOISY_EVENTS,
      healthy: ['/e/noisy-alone-again'],
    });
    noisy.ratio = noisy.perSecond / ((alone.perSecond + aloneAgain.perSecond) / 2);
    const met = noisy.ratio >= 0.9;
    noisy.notes.push(
      `org B beside org A's ${fmt(NOISY_ENDPOINTS)} hanging endpoints: ${fmt(noisy.ratio, 2)} of its rate alone (target ≥ 0.9: ${met ? 'met' : 'NOT met'})`,
    );
    say(`  ${noisy.notes[noisy.notes.length - 1]}`);
    if (!met) failures.push(`noisy neighbour: org B got ${fmt(noisy.ratio, 2)} of its rate alone (target ≥ 0.9)`);
  } finally {
    await inTurns(ids, (id) => deleteEndpoint(ctx.server.url, keyA, id).catch(() => {}));
  }
}
