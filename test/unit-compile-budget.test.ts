import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { CompileBudget } from '../src/event-types/compile-budget.js';

/** The per-org compile budget (src/event-types/compile-budget.ts) with a clock the test moves. */

test('an org past its budget waits until its window ends; other orgs do not', () => {
  let now = 0;
  const budget = new CompileBudget(500, 10_000, () => now);
  assert.equal(budget.waitMs('a'), 0);
  budget.charge('a', 300);
  assert.equal(budget.waitMs('a'), 0, 'under the budget');
  now = 2_000;
  budget.charge('a', 250);
  assert.equal(budget.waitMs('a'), 8_000, 'over it: until the window that began at 0 ends');
  assert.equal(budget.waitMs('b'), 0, 'another org is not affected');
  now = 10_000;
  assert.equal(budget.waitMs('a'), 0, 'a new window');
  budget.charge('a', 100);
  assert.equal(budget.waitMs('a'), 0);
});

test('property: within any window an org compiles at most the budget plus one compile before it must wait', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ gap: fc.integer({ min: 0, max: 3_000 }), ms: fc.integer({ min: 1, max: 250 }) }), {
        maxLength: 200,
      }),
      (steps) => {
        let now = 0;
        const budget = new CompileBudget(500, 10_000, () => now);
        const done: Array<{ at: number; ms: number }> = [];
        for (const step of steps) {
          now += step.gap;
          if (budget.waitMs('org') > 0) continue;
          budget.charge('org', step.ms);
          done.push({ at: now, ms: step.ms });
        }
        for (const first of done) {
          const inWindow = done.filter((compile) => compile.at >= first.at && compile.at < first.at + 10_000);
          const total = inWindow.reduce((sum, compile) => sum + compile.ms, 0);
          // Windows are aligned to their first compile: any 10 s holds at most two windows' worth.
          assert.ok(total <= 2 * (500 + 250), `${total} ms of compiles within 10 s`);
        }
      },
    ),
    { numRuns: 300 },
  );
});
