import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RoleCrashPolicy } from '../src/crash-policy.js';

/** The supervisor's decisions (src/cluster/crash-policy.ts), on a clock the test moves. */
const options = { limit: 5, windowMs: 60_000, baseDelayMs: 500, maxDelayMs: 30_000, healthyMs: 5_000 };

test('deaths soon after start back off exponentially up to the cap; a worker that stayed up is replaced at once', () => {
  const policy = new RoleCrashPolicy({ ...options, limit: 0 });
  const delays: number[] = [];
  for (let i = 0; i < 10; i++) delays.push((policy.died(i * 100, i * 100 - 50) as { replaceInMs: number }).replaceInMs);
  assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000]);
  assert.deepEqual(
    policy.died(100_000, 100_000 - 5_000),
    { replaceInMs: 0 },
    'ready for healthyMs: the streak is over',
  );
  assert.deepEqual(policy.died(100_100, 100_050), { replaceInMs: 500 });
  policy.stayedUp();
  assert.deepEqual(policy.died(100_200, 100_150), { replaceInMs: 500 }, 'stayedUp() ends the streak too');
});

test('gives up after `limit` deaths before ready within the window, not before', () => {
  const policy = new RoleCrashPolicy(options);
  for (let i = 0; i < 4; i++) assert.ok('replaceInMs' in policy.died(i * 1000, null));
  assert.deepEqual(policy.died(4000, null), { giveUp: true, deaths: 5 });
});

test('deaths before ready spread wider than the window never add up to a give-up', () => {
  const policy = new RoleCrashPolicy(options);
  for (let i = 0; i < 20; i++) assert.ok('replaceInMs' in policy.died(i * 16_000, null), `death ${i}`);
});

test('workers killed after they had served never give up, however often (an operator, the OOM killer)', () => {
  const policy = new RoleCrashPolicy(options);
  for (let i = 0; i < 100; i++) assert.ok('replaceInMs' in policy.died(i * 400, i * 400 - 100), `kill ${i}`);
});

test('limit 0 never gives up', () => {
  const policy = new RoleCrashPolicy({ ...options, limit: 0 });
  for (let i = 0; i < 50; i++) assert.ok('replaceInMs' in policy.died(i, null));
});
