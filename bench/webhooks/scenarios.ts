import { isolationScenario } from './isolation-scenario.js';
import { keysScenario } from './keys-scenario.js';
import { latencyScenario } from './latency-scenario.js';
import { noisyScenario } from './noisy-scenario.js';
import type { ScenarioContext } from './measure.js';
import { fmt, say } from './output.js';
import {
  BATCH_SIZE,
  BURST_EVENTS,
  FANOUT_ENDPOINTS,
  FANOUT_EVENTS,
  LATENCY_INTERVAL_MS,
  LATENCY_SECONDS,
  PRODUCERS,
  SCENARIOS,
} from './settings.js';
import { throughputScenario } from './throughput-scenario.js';

/** The scenarios BENCH_SCENARIOS names, always in this order. */
export async function runScenarios(ctx: ScenarioContext): Promise<void> {
  if (SCENARIOS.includes('burst')) {
    say(`\nburst: 1 endpoint, ${fmt(BURST_EVENTS)} events in batches of ${BATCH_SIZE} from ${PRODUCERS} producers`);
    await throughputScenario(ctx, { name: 'burst', events: BURST_EVENTS, healthy: ['/e/burst'] });
  }
  if (SCENARIOS.includes('fanout')) {
    say(`\nfanout: ${FANOUT_ENDPOINTS} endpoints, ${fmt(FANOUT_EVENTS)} events`);
    await throughputScenario(ctx, {
      name: 'fanout',
      events: FANOUT_EVENTS,
      healthy: Array.from({ length: FANOUT_ENDPOINTS }, (_, i) => `/e/fanout-${i}`),
    });
  }
  if (SCENARIOS.includes('latency')) {
    say(`\nlatency: one POST /v1/events every ${LATENCY_INTERVAL_MS} ms for ${LATENCY_SECONDS} s, 1 endpoint`);
    await latencyScenario(ctx);
  }
  if (SCENARIOS.includes('isolation')) await isolationScenario(ctx);
  if (SCENARIOS.includes('noisy')) await noisyScenario(ctx);
  if (SCENARIOS.includes('keys')) await keysScenario(ctx);
}
