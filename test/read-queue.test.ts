import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ReadQueue } from '../src/delivery/read-queue.js';

/** The delivery process's read queue (src/delivery/read-queue.ts): orgs take turns. */

test('an org with one stream waits for one read per other org, not behind a thousand of another org', () => {
  const queue = new ReadQueue<{ orgId: string; n: number }>();
  for (let n = 0; n < 1000; n++) queue.add({ orgId: 'a', n });
  const quiet = { orgId: 'b', n: 0 };
  queue.add(quiet);
  assert.equal(queue.size, 1001);
  const order = [queue.take()!, queue.take()!, queue.take()!];
  assert.deepEqual(
    order.map((s) => s.orgId),
    ['a', 'b', 'a'],
  );
  assert.equal(order[2]!.n, 1, 'oldest first within an org');
  assert.equal(queue.size, 998);
});

test('a stream is queued once; a deleted one is never taken', () => {
  const queue = new ReadQueue<{ orgId: string }>();
  const one = { orgId: 'a' };
  const two = { orgId: 'a' };
  queue.add(one);
  queue.add(one);
  queue.add(two);
  assert.equal(queue.size, 2);
  queue.delete(one);
  assert.equal(queue.take(), two);
  assert.equal(queue.take(), undefined);
  assert.equal(queue.size, 0);
});
