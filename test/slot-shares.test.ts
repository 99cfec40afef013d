import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { SlotShares, type SlotUser } from '../src/delivery/slot-shares.js';

/**
 * The process's send slots shared between orgs (src/delivery/slot-shares.ts), with fake streams:
 * each wants `demand` slots and holds them until the test ends a send.
 */

class FakeStream implements SlotUser {
  held = 0;
  asked = false;
  /** `suspect`: its sends go to an endpoint not known to answer (they count in the org's suspect pool). */
  constructor(
    readonly orgId: string,
    private readonly slots: SlotShares,
    public demand: number,
    readonly suspect = false,
  ) {}
  pump(): void {
    this.asked = true;
    while (this.held < this.demand && this.slots.tryAcquire(this, this.suspect)) this.held++;
  }
  end(): void {
    this.held--;
    this.demand--;
    this.slots.release(this, this.suspect);
  }
}

const heldBy = (streams: FakeStream[], orgId: string, suspect?: boolean) =>
  streams
    .filter((s) => s.orgId === orgId && (suspect === undefined || s.suspect === suspect))
    .reduce((sum, s) => sum + s.held, 0);

test('one org alone takes half the process; a second org finds its share free at once', () => {
  const slots = new SlotShares(1024);
  const stuck = Array.from({ length: 1000 }, () => new FakeStream('a', slots, 8));
  for (const stream of stuck) stream.pump();
  assert.equal(heldBy(stuck, 'a'), 512);
  const healthy = new FakeStream('b', slots, 400);
  healthy.pump();
  // B's share with two orgs working is 1024 / 3.
  assert.equal(healthy.held, 341);
  assert.equal(slots.sending, 853);
});

test('a slot that an org over its share frees goes to an org below its share that found the process full', () => {
  const slots = new SlotShares(8);
  const a = Array.from({ length: 10 }, () => new FakeStream('a', slots, 1));
  for (const stream of a) stream.pump();
  assert.equal(heldBy(a, 'a'), 4, 'alone: 8 / 2');
  const b = new FakeStream('b', slots, 10);
  b.pump();
  assert.equal(b.held, 2, 'two orgs: 8 / 3 each');
  const c = new FakeStream('c', slots, 10);
  c.pump();
  assert.equal(c.held, 2, 'the third finds its share (8 / 4) free');
  // A is over its share now (4 > 2): its ends go to nobody until it is under; then A's own streams.
  a.find((s) => s.held === 1)!.end();
  assert.equal(heldBy(a, 'a'), 3);
  assert.equal(b.held + c.held, 4);
  // B finishes everything: two orgs left, shares grow to 8 / 3 = 2 (C already has 2).
  while (b.held > 0) b.end();
  b.demand = 0;
  assert.equal(c.held, 2);
});

test('an org whose work ends gives its share back: those held at the smaller share get it at once', () => {
  const slots = new SlotShares(12);
  const a = new FakeStream('a', slots, 100);
  const b = new FakeStream('b', slots, 100);
  a.pump();
  b.pump();
  assert.equal(a.held, 6); // alone 12 / 2 = 6
  assert.equal(b.held, 4); // then 12 / 3 = 4
  while (b.held > 0) b.end();
  b.demand = 0;
  // With A alone again its share is 6; it already has 6.
  assert.equal(a.held, 6);
  a.end();
  assert.equal(a.held, 6, 'a freed slot goes back to A itself');
});

test("suspect sends (endpoints not known to answer) fill an eighth of their org's share; its other sends the rest", () => {
  const slots = new SlotShares(1024);
  const hanging = Array.from({ length: 1000 }, () => new FakeStream('a', slots, 1, true));
  for (const stream of hanging) stream.pump();
  assert.equal(heldBy(hanging, 'a'), 64, 'alone: an eighth of 1024 / 2');
  // The same org's healthy endpoint is not held behind its suspect ones.
  const healthyA = new FakeStream('a', slots, 1000);
  healthyA.pump();
  assert.equal(healthyA.held, 512 - 64);
  // Another org finds its share free; its own first (suspect) send too.
  const firstB = new FakeStream('b', slots, 1, true);
  firstB.pump();
  assert.equal(firstB.held, 1);
  // Two orgs now: A's share is 1024 / 3 = 341, its suspect share 42, and it holds 64 of those:
  // a suspect send that ends is not replaced until A is under 42, then the next one starts.
  assert.equal(slots.suspectShare, 42);
  healthyA.demand = healthyA.held;
  while (healthyA.held > 0) healthyA.end();
  const ending = hanging.filter((s) => s.held === 1);
  for (const stream of ending.slice(0, 22)) stream.end();
  assert.equal(heldBy(hanging, 'a'), 42, 'none replaced while over the suspect share');
  ending[22]!.end();
  assert.equal(heldBy(hanging, 'a'), 42, 'under it: the next waiting suspect stream starts');
});

test('paused: nothing starts until resumed, then waiting streams start', () => {
  const slots = new SlotShares(10);
  const a = new FakeStream('a', slots, 3);
  slots.pause();
  a.pump();
  assert.equal(a.held, 0);
  slots.resume();
  assert.equal(a.held, 3);
});

test('property: never more in flight than the capacity, and no slot idle while an org below its share waits', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 64 }),
      fc.array(
        fc.record({
          org: fc.integer({ min: 0, max: 5 }),
          demand: fc.integer({ min: 0, max: 40 }),
          suspect: fc.boolean(),
        }),
        { minLength: 1, maxLength: 20 },
      ),
      fc.array(fc.nat(), { maxLength: 200 }),
      (capacity, specs, ends) => {
        const slots = new SlotShares(capacity);
        const streams = specs.map((spec) => new FakeStream(`org${spec.org}`, slots, spec.demand, spec.suspect));
        const check = () => {
          const total = streams.reduce((sum, s) => sum + s.held, 0);
          assert.equal(total, slots.sending);
          assert.ok(total <= capacity, `${total} in flight > ${capacity}`);
          // An org below its share with a stream still wanting more (a suspect one: and below its
          // suspect share) means the process is full.
          for (const stream of streams) {
            if (!stream.asked || stream.held >= stream.demand || heldBy(streams, stream.orgId) >= slots.share) continue;
            if (stream.suspect && heldBy(streams, stream.orgId, true) >= slots.suspectShare) continue;
            assert.equal(total, capacity);
          }
        };
        for (const stream of streams) {
          stream.pump();
          check();
        }
        for (const pick of ends) {
          const busy = streams.filter((s) => s.held > 0);
          if (busy.length === 0) break;
          busy[pick % busy.length]!.end();
          check();
        }
      },
    ),
    { numRuns: 300 },
  );
});
