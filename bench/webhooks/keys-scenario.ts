import type { ScenarioContext } from './measure.js';
import { fmt, say } from './output.js';
import { KEYS_DISTINCT, KEYS_EVENTS } from './settings.js';
import { throughputScenario } from './throughput-scenario.js';

/**
 * Ordering "key" (API.md §5): one endpoint unordered, then one with ordering "key" whose events
 * carry KEYS_DISTINCT distinct ordering keys in turn, then unordered again: the keyed rate
 * against the mean of the two unordered runs (target ≥ 0.8, issue #26), so warm-up and drift
 * during the run favour neither side.
 */
export async function keysScenario(ctx: ScenarioContext): Promise<void> {
  say(`\nkeys: an unordered endpoint, ${fmt(KEYS_EVENTS)} events`);
  const unordered = await throughputScenario(ctx, {
    name: 'keys unordered',
    events: KEYS_EVENTS,
    healthy: ['/e/keys-unordered'],
  });
  say(`\nkeys: an endpoint with ordering "key", ${fmt(KEYS_EVENTS)} events over ${fmt(KEYS_DISTINCT)} keys`);
  const keyed = await throughputScenario(ctx, {
    name: `keys ordering=key ×${KEYS_DISTINCT}`,
    events: KEYS_EVENTS,
    healthy: ['/e/keys-keyed'],
    controls: { ordering: 'key' },
    orderingKeys: KEYS_DISTINCT,
    ratioTo: { label: 'of unordered', perSecond: unordered.perSecond },
  });
  say(`\nkeys: an unordered endpoint again, ${fmt(KEYS_EVENTS)} events`);
  const again = await throughputScenario(ctx, {
    name: 'keys unordered again',
    events: KEYS_EVENTS,
    healthy: ['/e/keys-unordered-again'],
  });
  keyed.ratio = keyed.perSecond / ((unordered.perSecond + again.perSecond) / 2);
  keyed.notes.push(
    `ordering "key" over ${fmt(KEYS_DISTINCT)} keys: ${fmt(keyed.ratio, 2)} of unordered delivery (target ≥ 0.8: ${keyed.ratio >= 0.8 ? 'met' : 'not met'})`,
  );
  say(`  ${keyed.notes[keyed.notes.length - 1]}`);
}
