import assert from 'node:assert/strict';
import { afterEach, mock, test } from 'node:test';
import fc from 'fast-check';
import { leaseFromBucket, msUntilFull, type BucketState } from '../src/ratelimit/bucket-math.js';
import { BucketTable } from '../src/ratelimit/bucket-table.js';

/**
 * The shared token bucket (src/ratelimit/bucket-math.ts) and the primary's table of them
 * (bucket-table.ts), on a clock the test moves: performance.now is replaced, the sweep's
 * setInterval is Node's mock timer.
 */

let clock = 0;
function fakeClock(): void {
  clock = 0;
  mock.method(performance, 'now', () => clock);
  mock.timers.enable({ apis: ['setInterval'] });
}
afterEach(() => {
  mock.restoreAll();
  mock.timers.reset();
});

test('an untouched bucket is full; a lease takes whole tokens; time refills it at the rate, up to burst', () => {
  assert.deepEqual(leaseFromBucket(undefined, 10, 20, 5, 0), { granted: 5, tokens: 15 });
  assert.deepEqual(leaseFromBucket({ tokens: 0.5, at: 0 }, 10, 20, 3, 250), { granted: 3, tokens: 0 });
  assert.deepEqual(leaseFromBucket({ tokens: 2.9, at: 0 }, 10, 20, 5, 0), { granted: 2, tokens: 2.9 - 2 });
  assert.deepEqual(leaseFromBucket({ tokens: 19, at: 0 }, 10, 20, 0, 60_000), { granted: 0, tokens: 20 });
  assert.equal(msUntilFull(15, 10, 20), 500);
});

test('tokens handed back (a negative lease) refill the bucket, never beyond burst', () => {
  assert.deepEqual(leaseFromBucket({ tokens: 5, at: 0 }, 10, 20, -3, 0), { granted: -3, tokens: 8 });
  assert.deepEqual(leaseFromBucket({ tokens: 18, at: 0 }, 10, 20, -5, 0), { granted: -5, tokens: 20 });
});

test("a clock that goes back (another node's time in Redis) refills nothing", () => {
  assert.deepEqual(leaseFromBucket({ tokens: 1, at: 1_000 }, 10, 20, 5, 500), { granted: 1, tokens: 0 });
});

test('BucketTable: orgs have their own buckets; a limit change applies to the next lease', () => {
  fakeClock();
  const table = new BucketTable();
  assert.equal(table.take('a', 10, 10, 10).granted, 10);
  assert.equal(table.take('a', 10, 10, 1).granted, 0);
  assert.equal(table.take('b', 10, 10, 4).granted, 4, 'org b untouched by a');
  clock += 500;
  assert.equal(table.take('a', 10, 10, 10).granted, 5);
  clock += 1_000;
  assert.equal(table.take('a', 100, 50, 100).granted, 50, 'refilled at the new rate, up to the new burst');
  table.stop();
});

test('BucketTable: forgetting full buckets changes no answer (a forgotten bucket reads as full)', async () => {
  fakeClock();
  const table = new BucketTable();
  table.take('a', 10, 10, 10); // empty, full again 1 s later
  table.take('b', 1, 100, 100); // empty for 100 s
  clock += 10_000;
  mock.timers.tick(10_000); // the sweep
  assert.deepEqual(await table.lease('a', 10, 10, 3), { granted: 3, tokens: 7 });
  const b = await table.lease('b', 1, 100, 100);
  assert.equal(b.granted, 10, 'b was not full, so it was kept: 10 s of refill');
  table.stop();
});

test('property: the table never hands out more than burst + rate × elapsed time, returns included', () => {
  const op = fc.record({
    advanceMs: fc.integer({ min: 0, max: 3_000 }),
    want: fc.integer({ min: -20, max: 200 }),
    sweep: fc.boolean(),
  });
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 1_000 }),
      fc.integer({ min: 1, max: 2_000 }),
      fc.array(op, { maxLength: 200 }),
      (rate, burst, ops) => {
        mock.restoreAll(); // a failed run left its fakes: shrinking reruns start clean
        mock.timers.reset();
        fakeClock();
        const table = new BucketTable();
        let net = 0; // tokens out of the bucket: granted, less what was handed back
        let out = 0; // tokens held by lessees: a return never exceeds what they hold
        for (const { advanceMs, want, sweep } of ops) {
          clock += advanceMs;
          if (sweep) mock.timers.tick(10_000), (clock += 10_000);
          const ask = want < 0 ? -Math.min(-want, out) : want;
          const { granted, tokens } = table.take('org', rate, burst, ask);
          net += granted;
          out += granted;
          assert.ok(tokens >= 0 && tokens <= burst, `bucket at ${tokens}`);
          assert.ok(granted <= Math.max(0, ask), 'never more than asked');
          assert.ok(
            net <= burst + (rate * clock) / 1000 + 1e-6,
            `${net} tokens out after ${clock} ms at ${rate}/s, burst ${burst}`,
          );
        }
        table.stop();
        mock.restoreAll();
        mock.timers.reset();
      },
    ),
    { numRuns: 300 },
  );
});

test('property: one lease over a long pause equals many small leases over the same time (no rounding leak)', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 500 }),
      fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 50 }),
      (rate, gaps) => {
        let state: BucketState = { tokens: 0, at: 0 };
        let now = 0;
        for (const gap of gaps) {
          now += gap;
          const result = leaseFromBucket(state, rate, 1e9, 0, now);
          state = { tokens: result.tokens, at: now };
        }
        const once = leaseFromBucket({ tokens: 0, at: 0 }, rate, 1e9, 0, now).tokens;
        assert.ok(Math.abs(state.tokens - once) < 1e-6);
      },
    ),
    { numRuns: 200 },
  );
});
