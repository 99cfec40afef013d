import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { AdaptiveLimit } from '../src/delivery/adaptive-limit.js';

/**
 * The AIMD window of one endpoint (src/delivery/adaptive-limit.ts), driven by hand: tickets are
 * taken when a send starts and handed back with its verdict and latency. No clock, no I/O.
 */

/** Completes `count` sends started now, all ok at `latencyMs`. */
function succeed(limit: AdaptiveLimit, count: number, latencyMs = 10): void {
  const tickets = Array.from({ length: count }, () => limit.started());
  for (const ticket of tickets) limit.completed(ticket, 'ok', latencyMs);
}

test('starts at 8 (or the cap below it) and doubles every round trip in slow start', () => {
  assert.equal(new AdaptiveLimit(256).current, 8);
  assert.equal(new AdaptiveLimit(3).current, 3);
  const limit = new AdaptiveLimit(256);
  succeed(limit, limit.current);
  assert.equal(limit.current, 16);
  succeed(limit, limit.current);
  assert.equal(limit.current, 32);
});

test('a failure halves the window once per round trip: sends already in flight carry old news', () => {
  const limit = new AdaptiveLimit(256);
  succeed(limit, 8);
  succeed(limit, 16);
  assert.equal(limit.current, 32);
  const inFlight = Array.from({ length: 10 }, () => limit.started());
  for (const ticket of inFlight) limit.completed(ticket, 'failed', 10);
  assert.equal(limit.current, 16, 'ten failures of one round trip halve it once');
  limit.completed(limit.started(), 'failed', 10);
  assert.equal(limit.current, 8, 'a send started after the back-off halves it again');
});

test('after a back-off the window grows by one per round trip (congestion avoidance)', () => {
  const limit = new AdaptiveLimit(256);
  succeed(limit, 8);
  limit.completed(limit.started(), 'failed', 10); // 16 → 8
  assert.equal(limit.current, 8);
  // Each success adds 1/window: a window's worth of successes adds a little less than one.
  for (let round = 1; round <= 5; round++) succeed(limit, limit.current);
  assert.ok(limit.current >= 12 && limit.current <= 13, `window ${limit.current} after five round trips`);
});

test('a response far slower than the baseline takes 10% off; one only a little slower does not', () => {
  const limit = new AdaptiveLimit(256);
  succeed(limit, 8, 5); // baseline 5 ms, window 16
  assert.equal(limit.current, 16);
  limit.completed(limit.started(), 'ok', 90); // 18× slower, but under SLOW_EXTRA_MS (100 ms) more: our own stalls
  assert.equal(limit.current, 17);
  limit.completed(limit.started(), 'ok', 400); // 80× and 395 ms slower: queueing at the receiver
  assert.equal(limit.current, 15); // 17 × 0.9 = 15.3
});

test('setCap lowers the window at once and bounds its growth', () => {
  const limit = new AdaptiveLimit(256);
  succeed(limit, 8);
  succeed(limit, 16);
  limit.setCap(5);
  assert.equal(limit.current, 5);
  succeed(limit, 20);
  assert.equal(limit.current, 5);
  limit.setCap(100);
  succeed(limit, 5);
  assert.equal(limit.current, 10);
});

test('property: whatever the endpoint answers, the window stays within [1, cap]', () => {
  const step = fc.oneof(
    fc.record({ kind: fc.constant('start' as const) }),
    fc.record({
      kind: fc.constant('complete' as const),
      pick: fc.nat(),
      ok: fc.boolean(),
      latencyMs: fc.integer({ min: 0, max: 60_000 }),
    }),
    fc.record({ kind: fc.constant('cap' as const), cap: fc.integer({ min: 1, max: 512 }) }),
  );
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 512 }), fc.array(step, { maxLength: 400 }), (initialCap, steps) => {
      let cap = initialCap;
      const limit = new AdaptiveLimit(cap);
      const open: number[] = [];
      for (const s of steps) {
        if (s.kind === 'start') open.push(limit.started());
        else if (s.kind === 'cap') limit.setCap((cap = s.cap));
        else if (open.length > 0) {
          const [ticket] = open.splice(s.pick % open.length, 1);
          limit.completed(ticket!, s.ok ? 'ok' : 'failed', s.latencyMs);
        }
        assert.ok(limit.current >= 1 && limit.current <= cap, `window ${limit.current} outside [1, ${cap}]`);
        assert.ok(Number.isInteger(limit.current));
      }
    }),
    { numRuns: 300 },
  );
});
