import { Bench } from 'tinybench';
import { eventTypeMatcher } from '../../src/delivery/event-types.js';
import { filterView, parseFilter } from '../../src/filter/filter.js';
import { runAndReport } from './report.js';

/**
 * The cost of an endpoint's (or a group's) `filter` per event (issue 26's target: < 1 µs per event
 * and endpoint), against the `event_types` test every event already pays. The view is built as
 * src/delivery/event-reader.ts builds it; a filter that reads the payload parses it (~170 bytes
 * here, a typical small event), one that does not never touches it.
 */
const EVENTS = 1_000;
const payloads = Array.from({ length: EVENTS }, (_, i) =>
  JSON.stringify({
    order_id: `ord_${i}`,
    amount: (i * 37) % 500,
    currency: i % 3 ? 'EUR' : 'USD',
    country: ['DE', 'FR', 'US', 'GB'][i % 4],
    user: { id: i, plan: i % 5 ? 'free' : 'pro' },
  }),
);
const views = payloads.map((payload, i) => ({
  id: `0193aaaa-0000-7000-8000-${String(i).padStart(12, '0')}`,
  type: i % 2 ? 'order.paid' : 'order.created',
  payload,
  dedupId: null,
  occurredAt: null,
  receivedAt: '2026-12-05T06:00:00.000Z',
}));

export async function filterBench(time: number) {
  const types = eventTypeMatcher(['order.*']);
  const onType = parseFilter({ type: { $prefix: 'order.' } });
  const onPayload = parseFilter({
    'payload.amount': { $gte: 100 },
    'payload.country': { $in: ['DE', 'FR'] },
    $or: [{ 'payload.user.plan': 'pro' }, { 'payload.currency': 'EUR' }],
  });
  const parsed = views.map((view) => filterView(view, true));
  let hits = 0;
  const bench = new Bench({ time });
  bench.add('event_types per 1 000 events', () => {
    for (const view of views) if (types(view.type)) hits++;
  });
  bench.add('filter on type per 1 000 events', () => {
    for (const view of views) if (onType.match(filterView(view, onType.readsPayload))) hits++;
  });
  bench.add('filter on payload (parse + match) per 1 000 events', () => {
    for (const view of views) if (onPayload.match(filterView(view, onPayload.readsPayload))) hits++;
  });
  bench.add('filter on payload, match only, per 1 000 events', () => {
    for (const view of parsed) if (onPayload.match(view)) hits++;
  });
  const rows = await runAndReport('filter per event (divide µs by 1 000 for one event)', bench, {
    name: 'filter',
    baseline: 'event_types per 1 000 events',
    candidates: [
      'filter on type per 1 000 events',
      'filter on payload (parse + match) per 1 000 events',
      'filter on payload, match only, per 1 000 events',
    ],
  });
  if (hits === 0) throw new Error('no event matched');
  return rows;
}
