import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { backoffMs, type BrokerLink, ConnectionKeeper } from '../src/destinations/connection-keeper.js';
import { InFlightPublishes } from '../src/destinations/in-flight.js';
import { secretScrubber, withoutUserinfo } from '../src/destinations/redact.js';

/**
 * The broker-independent cores of the destination publishers (src/destinations/): the deadline
 * list that bounds every publish, the connection keeper (lazy open, fail fast between tries,
 * backoff, reopen after a drop or a silent connection) and the secret scrubber. Fakes at the
 * seams; the real brokers are in destination-publishers.test.ts.
 */

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('InFlightPublishes', () => {
  test('publishes expiring in the same sweep all fail by their deadline, none is left unsettled', async () => {
    let sweeps = 0;
    const inFlight = new InFlightPublishes(100, 'no confirm', () => sweeps++);
    const pendings = Array.from({ length: 5 }, () => inFlight.begin());
    const outcomes = await Promise.all(pendings.map((p) => p.outcome));
    for (const outcome of outcomes) {
      assert.equal(outcome.ok, false);
      assert.equal(outcome.error, 'timeout: no confirm within 100 ms');
      assert.ok(outcome.latencyMs >= 99, `${outcome.latencyMs}`);
    }
    assert.ok(sweeps >= 1);
    assert.equal(inFlight.tracked, 0);
  });

  test('a settled publish is untouched by its deadline; only sweeps that failed something report timeouts', async () => {
    let sweeps = 0;
    const inFlight = new InFlightPublishes(80, 'no confirm', () => sweeps++);
    const first = inFlight.begin();
    const second = inFlight.begin();
    const third = inFlight.begin();
    inFlight.succeed(second); // out of order: the head stays
    inFlight.succeed(first);
    assert.equal(inFlight.tracked, 1, 'settled publishes at the head are dropped at once');
    assert.equal((await first.outcome).ok, true);
    assert.equal((await second.outcome).ok, true);
    const late = await third.outcome;
    assert.equal(late.error, 'timeout: no confirm within 80 ms');
    inFlight.succeed(third); // a confirm after the deadline changes nothing
    assert.equal((await third.outcome).ok, false);
    assert.equal(sweeps, 1);
    const quick = inFlight.begin();
    inFlight.succeed(quick);
    await sleep(150);
    assert.equal(sweeps, 1, 'no timeout reported when everything settled in time');
  });

  test('publishes started later get their own full timeout', async () => {
    const inFlight = new InFlightPublishes(120, 'no confirm');
    const early = inFlight.begin();
    await sleep(60);
    const later = inFlight.begin();
    assert.equal((await early.outcome).ok, false);
    assert.equal(later.settled, false, 'not failed by the earlier deadline');
    const outcome = await later.outcome;
    assert.ok(outcome.latencyMs >= 119, `${outcome.latencyMs}`);
  });

  test('failAll fails what is unsettled, with its reason, and keeps settled outcomes', async () => {
    const inFlight = new InFlightPublishes(10_000, 'no confirm');
    const done = inFlight.begin();
    const open = [inFlight.begin(), inFlight.begin()];
    inFlight.succeed(done);
    inFlight.failAll('closed');
    assert.equal((await done.outcome).ok, true);
    for (const pending of open) assert.equal((await pending.outcome).error, 'closed');
    assert.equal(inFlight.tracked, 0);
  });

  test('property: every publish settles exactly once, by its answer or by its deadline', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ startGap: fc.nat(15), answerAfter: fc.option(fc.nat(80)), fails: fc.boolean() }), {
          minLength: 1,
          maxLength: 25,
        }),
        async (plan) => {
          const timeoutMs = 40;
          const inFlight = new InFlightPublishes(timeoutMs, 'no confirm');
          const outcomes = [];
          for (const step of plan) {
            await sleep(step.startGap);
            const pending = inFlight.begin();
            if (step.answerAfter !== null) {
              setTimeout(() => {
                if (step.fails) inFlight.fail(pending, 'nack');
                else inFlight.succeed(pending);
              }, step.answerAfter);
            }
            outcomes.push(pending.outcome);
          }
          for (const outcome of await Promise.all(outcomes)) {
            if (outcome.ok) continue;
            assert.ok(outcome.error === 'nack' || outcome.error === `timeout: no confirm within ${timeoutMs} ms`);
            if (outcome.error !== 'nack') assert.ok(outcome.latencyMs >= timeoutMs - 1);
          }
          assert.equal(inFlight.tracked, 0);
        },
      ),
      { numRuns: 15 },
    );
  });
});

/** A broker link whose opens are scripted: each open() takes the next answer. */
class FakeLink implements BrokerLink<{ id: number }> {
  opens = 0;
  closes: { id: number; reason: string }[] = [];
  drop: ((reason: string) => void) | null = null;
  answers: (() => Promise<{ id: number }>)[] = [];

  open(dropped: (reason: string) => void): Promise<{ id: number }> {
    this.opens++;
    this.drop = dropped;
    const answer = this.answers.shift();
    return answer ? answer() : Promise.resolve({ id: this.opens });
  }

  async close(connection: { id: number }, reason: string): Promise<void> {
    this.closes.push({ id: connection.id, reason });
  }

  describeOpenError(error: unknown): string {
    return `refused (${(error as Error).message})`;
  }
}

describe('ConnectionKeeper', () => {
  test('opens lazily, once for concurrent publishes, then hands out the open connection', async () => {
    const link = new FakeLink();
    const keeper = new ConnectionKeeper(link, 1000);
    assert.equal(link.opens, 0, 'nothing opened before a publish needs it');
    const a = keeper.get();
    const b = keeper.get();
    assert.ok(a instanceof Promise);
    assert.equal(a, b);
    assert.deepEqual(await a, { id: 1 });
    assert.deepEqual(keeper.get(), { id: 1 });
    assert.equal(link.opens, 1);
  });

  test('a failed open: publishes fail at once with its reason until the backoff has passed, then it tries again', async () => {
    const link = new FakeLink();
    link.answers.push(() => Promise.reject(new Error('ECONNREFUSED')));
    const keeper = new ConnectionKeeper(link, 1000);
    await assert.rejects(keeper.get() as Promise<unknown>, /refused \(ECONNREFUSED\)/);
    assert.equal(keeper.get(), 'refused (ECONNREFUSED)', 'fails fast between tries');
    assert.equal(link.opens, 1);
    await sleep(650); // first backoff: 0.5 s ± 20%
    const again = keeper.get();
    assert.ok(again instanceof Promise);
    assert.deepEqual(await again, { id: 2 });
  });

  test('an open that hangs fails after the open timeout; the connection it yields later is closed', async () => {
    const link = new FakeLink();
    let late!: (connection: { id: number }) => void;
    link.answers.push(() => new Promise((resolve) => (late = resolve)));
    const keeper = new ConnectionKeeper(link, 100);
    await assert.rejects(keeper.get() as Promise<unknown>, /no connection within 100 ms/);
    assert.equal(keeper.get(), 'no connection within 100 ms');
    late({ id: 99 });
    await sleep(10);
    assert.deepEqual(link.closes, [{ id: 99, reason: 'closed' }]);
  });

  test('after a drop the next publish reopens at once; a second drop without a working publish backs off', async () => {
    const link = new FakeLink();
    const keeper = new ConnectionKeeper(link, 1000);
    await keeper.get();
    keeper.working();
    link.drop!('socket closed');
    const reopening = keeper.get();
    assert.ok(reopening instanceof Promise, 'first drop: reopen at once');
    await reopening;
    link.drop!('socket closed again');
    assert.equal(keeper.get(), 'connection lost: socket closed again', 'no working publish in between: back off');
    assert.equal(link.opens, 2);
  });

  test('a drop of a connection already replaced is ignored', async () => {
    const link = new FakeLink();
    const keeper = new ConnectionKeeper(link, 1000);
    await keeper.get();
    const firstDrop = link.drop!;
    firstDrop('gone');
    await keeper.get();
    firstDrop('gone again'); // stale
    assert.deepEqual(keeper.get(), { id: 2 });
  });

  test('timedOut gives up a connection that answered nothing for a whole timeout, not one that works', async () => {
    const link = new FakeLink();
    const keeper = new ConnectionKeeper(link, 60);
    await keeper.get();
    keeper.timedOut();
    assert.deepEqual(keeper.get(), { id: 1 }, 'just opened: kept');
    await sleep(80);
    keeper.timedOut();
    assert.deepEqual(link.closes, [{ id: 1, reason: 'no answer within 60 ms' }]);
    const reopening = keeper.get();
    assert.ok(reopening instanceof Promise);
    await reopening;
    await sleep(80);
    keeper.working();
    keeper.timedOut();
    assert.deepEqual(keeper.get(), { id: 2 }, 'a publish just went through: kept');
  });

  test('close() closes the connection; later publishes are told "closed"', async () => {
    const link = new FakeLink();
    const keeper = new ConnectionKeeper(link, 1000);
    await keeper.get();
    await keeper.close();
    assert.deepEqual(link.closes, [{ id: 1, reason: 'closed' }]);
    assert.equal(keeper.get(), 'closed');
  });

  test('close() while opening: the opening fails and its connection is closed', async () => {
    const link = new FakeLink();
    let finish!: (connection: { id: number }) => void;
    link.answers.push(() => new Promise((resolve) => (finish = resolve)));
    const keeper = new ConnectionKeeper(link, 1000);
    const opening = keeper.get() as Promise<unknown>;
    await keeper.close();
    finish({ id: 7 });
    await assert.rejects(opening, /closed/);
    await sleep(5);
    assert.deepEqual(link.closes, [{ id: 7, reason: 'closed' }]);
  });

  test('backoff: 0.5 s doubling, jittered ±20%, never over 30 s', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 200 }), (failures) => {
        const delay = backoffMs(failures);
        const base = Math.min(30_000 / 1.2, 500 * 2 ** (failures - 1));
        assert.ok(delay >= Math.floor(base * 0.8) && delay <= Math.ceil(base * 1.2), `${failures}: ${delay}`);
        assert.ok(delay <= 30_000);
      }),
    );
  });
});

describe('secretScrubber', () => {
  test('strips URL userinfo and every secret, raw or %-encoded', () => {
    const scrub = secretScrubber(['p@ss/w:rd', undefined, '']);
    assert.equal(
      scrub('connect amqp://user:p%40ss%2Fw%3Ard@host:5672/vh failed; password p@ss/w:rd rejected'),
      'connect amqp://host:5672/vh failed; password *** rejected',
    );
    assert.equal(
      withoutUserinfo('redis://:secret@127.0.0.1:6379 and nats://tok@h:4222'),
      'redis://127.0.0.1:6379 and nats://h:4222',
    );
  });

  test('a secret containing another goes whole (longest first)', () => {
    const scrub = secretScrubber(['abc', 'xxabcxx']);
    assert.equal(scrub('saw xxabcxx and abc'), 'saw *** and ***');
  });
});
