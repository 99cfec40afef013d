import assert from 'node:assert/strict';
import { afterEach, mock, test } from 'node:test';
import fc from 'fast-check';
import { ApiError } from '../src/errors.js';
import type { RequestContext } from '../src/http/context.js';
import type { LeaseResult } from '../src/ratelimit/bucket-math.js';
import { BucketTable } from '../src/ratelimit/bucket-table.js';
import { RateLimiter } from '../src/ratelimit/limiter.js';
import type { TokenStore } from '../src/ratelimit/store.js';

/**
 * The per-worker rate limiter (src/ratelimit/limiter.ts) over an in-memory shared bucket
 * (BucketTable), on a clock the test moves: performance.now is replaced and setInterval /
 * setImmediate are Node's mock timers, so leases, sweeps and credit run in a known order.
 */

let clock = 0;
afterEach(() => {
  mock.restoreAll();
  mock.timers.reset();
});

function fakeTime(): void {
  clock = 0;
  mock.method(performance, 'now', () => clock);
  mock.timers.enable({ apis: ['setInterval', 'setImmediate'] });
}

/** Moves the clock; timers due run, and every promise callback they caused. */
async function advance(ms: number): Promise<void> {
  const step = 50;
  for (let t = 0; t < ms; t += step) {
    const dt = Math.min(step, ms - t);
    clock += dt;
    mock.timers.tick(dt);
    await settle();
  }
  mock.timers.tick(0);
  await settle();
}

async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
  mock.timers.tick(0); // setImmediate(flushLeases)
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

/** The shared bucket, with a count of round trips to it. */
class CountingStore implements TokenStore {
  leases = 0;
  constructor(readonly table: BucketTable) {}
  lease(orgId: string, rate: number, burst: number, want: number): Promise<LeaseResult> {
    this.leases++;
    return this.table.lease(orgId, rate, burst, want);
  }
}

function request(orgId: string): RequestContext {
  return { principal: { orgId }, extraHeaders: null } as unknown as RequestContext;
}

function limiterFor(store: TokenStore, rate: number, burst: number): RateLimiter {
  return new RateLimiter({ store, loadLimit: async () => ({ rate, burst }) });
}

/** Admits (true) or refuses with 429 (false); anything else is a failure. */
function charge(limiter: RateLimiter, ctx: RequestContext, cost: number): boolean {
  try {
    limiter.charge(ctx, cost);
    return true;
  } catch (error) {
    assert.ok(error instanceof ApiError && error.code === 'rate_limited', String(error));
    return false;
  }
}

test('an org admits its burst at once, then 429 with Retry-After and RateLimit-* headers', async () => {
  fakeTime();
  const table = new BucketTable();
  const limiter = limiterFor(new CountingStore(table), 10, 20);
  const ctx = request('org-a');
  await limiter.afterAuth(ctx);
  assert.deepEqual(ctx.extraHeaders, [
    ['RateLimit-Limit', '10'],
    ['RateLimit-Remaining', '20'],
    ['RateLimit-Reset', '0'],
  ]);
  let admitted = 0;
  for (let i = 0; i < 30; i++) {
    if (charge(limiter, ctx, 1)) admitted++;
    await settle();
  }
  assert.equal(admitted, 20);
  try {
    limiter.charge(ctx, 1);
    assert.fail('admitted past the burst');
  } catch (error) {
    assert.ok(error instanceof ApiError);
    assert.equal(error.status, 429);
    assert.ok(Number(error.headers?.['Retry-After']) >= 1);
  }
  await limiter.stop();
  table.stop();
});

test('a request costing more than the burst is refused with a message saying so', async () => {
  fakeTime();
  const table = new BucketTable();
  const limiter = limiterFor(table, 10, 20);
  const ctx = request('org-a');
  await limiter.afterAuth(ctx);
  assert.throws(
    () => limiter.charge(ctx, 21),
    (error: ApiError) => error.status === 429 && /burst is 20/.test(error.message),
  );
  assert.equal(charge(limiter, ctx, 20), true, 'the burst itself is fine');
  await limiter.stop();
  table.stop();
});

test('tokens refill at the rate: after the burst, about rate per second', async () => {
  fakeTime();
  const table = new BucketTable();
  const limiter = limiterFor(table, 100, 100);
  const ctx = request('org-a');
  await limiter.afterAuth(ctx);
  let admitted = 0;
  for (let ms = 0; ms < 5_000; ms += 5) {
    for (let i = 0; i < 2; i++) if (charge(limiter, ctx, 1)) admitted++;
    await advance(5);
  }
  // 100 at once, then 100/s for 5 s: 600, less what one lease's rounding holds back.
  assert.ok(admitted >= 560 && admitted <= 600, `admitted ${admitted}`);
  await limiter.stop();
  table.stop();
});

test('orgs do not share a bucket: one org spending everything leaves another untouched', async () => {
  fakeTime();
  const table = new BucketTable();
  const limiter = limiterFor(table, 10, 10);
  const a = request('org-a');
  const b = request('org-b');
  await limiter.afterAuth(a);
  await limiter.afterAuth(b);
  while (charge(limiter, a, 1)) await settle();
  let admitted = 0;
  for (let i = 0; i < 10; i++) if (charge(limiter, b, 1)) admitted++;
  assert.equal(admitted, 10);
  await limiter.stop();
  table.stop();
});

test('stop hands leased tokens back to the shared bucket', async () => {
  fakeTime();
  const table = new BucketTable();
  const limiter = limiterFor(table, 1_000, 1_000);
  const ctx = request('org-a');
  await limiter.afterAuth(ctx);
  for (let ms = 0; ms < 1_000; ms += 10) {
    charge(limiter, ctx, 1);
    await advance(10);
  }
  const before = table.take('org-a', 1_000, 1_000, 0).tokens;
  await limiter.stop();
  const after = table.take('org-a', 1_000, 1_000, 0).tokens;
  assert.ok(after >= before, `${before} → ${after}`);
  table.stop();
});

/**
 * One worker: never more than burst + rate × time, plus one lease of credit. Several workers:
 * each admits on credit against its last report of the shared bucket, so in the moment before
 * their leases come back N workers can each admit up to that report: the bound is per worker
 * (found by this property: rate 1, burst 9, two workers charging 3 and 9 at once admit 12).
 */
async function boundedAdmission(
  workerCounts: { min: number; max: number },
  slack: (workers: number, burst: number, maxLease: number) => number,
): Promise<void> {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 500 }),
      fc.integer({ min: 1, max: 500 }),
      fc.integer(workerCounts),
      fc.array(
        fc.record({
          worker: fc.nat(),
          cost: fc.integer({ min: 1, max: 20 }),
          advanceMs: fc.integer({ min: 0, max: 400 }),
        }),
        { maxLength: 150 },
      ),
      async (rate, burst, workers, steps) => {
        // A failed run must not leave its fakes in place for the next (fast-check shrinks by rerunning).
        mock.restoreAll();
        mock.timers.reset();
        fakeTime();
        const table = new BucketTable();
        try {
          const limiters = Array.from({ length: workers }, () => limiterFor(table, rate, burst));
          const ctx = request('org-a');
          for (const limiter of limiters) await limiter.afterAuth(ctx);
          let admitted = 0;
          const maxLease = Math.max(1, Math.floor(rate * 0.1));
          for (const step of steps) {
            if (charge(limiters[step.worker % workers]!, ctx, step.cost)) admitted += step.cost;
            await advance(step.advanceMs);
            const bound = (rate * clock) / 1000 + slack(workers, burst, maxLease);
            assert.ok(
              admitted <= bound,
              `${admitted} admitted by ${workers} workers in ${clock} ms at ${rate}/s, burst ${burst} (bound ${bound})`,
            );
          }
          for (const limiter of limiters) await limiter.stop();
        } finally {
          table.stop();
          mock.restoreAll();
          mock.timers.reset();
        }
      },
    ),
    { numRuns: 60, seed: Number(process.env.FC_SEED) || undefined },
  );
}

test('property: one worker never admits more than burst + rate × time, plus one lease', async () => {
  await boundedAdmission({ min: 1, max: 1 }, (_workers, burst, maxLease) => burst + maxLease);
});

test('property: N workers sharing a bucket never admit more than N × (burst + one lease) + rate × time', async () => {
  await boundedAdmission({ min: 2, max: 3 }, (workers, burst, maxLease) => workers * (burst + maxLease));
});
