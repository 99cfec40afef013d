import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { smallestUuidv7At, uuidv7, uuidv7Time } from '../src/ids.js';

/** UUIDv7 arithmetic (src/ids.ts) that retention and delivery ids lean on. */

test('smallestUuidv7At is the lowest id of its millisecond', () => {
  assert.equal(smallestUuidv7At(0), '00000000-0000-7000-8000-000000000000');
  assert.equal(smallestUuidv7At(0x0123456789ab), '01234567-89ab-7000-8000-000000000000');
  assert.equal(uuidv7Time(smallestUuidv7At(1_733_000_000_123)), 1_733_000_000_123);
});

test('property: an id made at ms sorts at or above smallestUuidv7At(ms) and below smallestUuidv7At(ms + 1)', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: Date.UTC(9999, 0, 1) }), fc.integer({ min: 1, max: 50 }), (ms, count) => {
      for (let i = 0; i < count; i++) {
        const id = uuidv7(ms);
        assert.ok(smallestUuidv7At(ms) <= id && id < smallestUuidv7At(ms + 1), `${id} at ${ms}`);
        assert.equal(uuidv7Time(id), ms);
      }
    }),
    { numRuns: 500 },
  );
});
