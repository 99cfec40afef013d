import type { ScenarioContext } from './measure.js';
import { fmt, say } from './output.js';
import { ISOLATION_EVENTS } from './settings.js';
import { throughputScenario } from './throughput-scenario.js';

/**
 * A healthy endpoint alone, beside a hanging and a failing (500) endpoint of the same org, alone
 * again: the reference is the mean of the two runs alone, so warm-up and drift during the run do
 * not favour either side.
 */
export async function isolationScenario(ctx: ScenarioContext): Promise<void> {
  say(`\nisolation: a healthy endpoint alone, ${fmt(ISOLATION_EVENTS)} events`);
  const alone = await throughputScenario(ctx, {
    name: 'isolation alone',
    events: ISOLATION_EVENTS,
    healthy: ['/e/isolation-alone'],
  });
  say(`\nisolation: the same beside a hanging and a failing (500) endpoint of the same org`);
  const mixed = await throughputScenario(ctx, {
    name: 'isolation +hang+500',
    events: ISOLATION_EVENTS,
    healthy: ['/e/isolation-mixed'],
    extra: ['/hang/isolation', '/fail/isolation'],
    ratioTo: { label: 'of alone', perSecond: alone.perSecond },
  });
  say(`\nisolation: a healthy endpoint alone again, ${fmt(ISOLATION_EVENTS)} events`);
  const aloneAgain = await throughputScenario(ctx, {
    name: 'isolation alone again',
    events: ISOLATION_EVENTS,
    healthy: ['/e/isolation-alone-again'],
  });
  mixed.ratio = mixed.perSecond / ((alone.perSecond + aloneAgain.perSecond) / 2);
  mixed.notes.push(
    `healthy endpoint beside hang+500: ${fmt(mixed.ratio, 2)} of its rate alone (target ≥ 0.9: ${mixed.ratio! >= 0.9 ? 'met' : 'not met'})`,
  );
  say(`  ${mixed.notes[mixed.notes.length - 1]}`);
}
