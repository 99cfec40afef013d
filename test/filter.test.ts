import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ApiError } from '../src/errors.js';
import { MAX_FILTER_BYTES, parseFilter } from '../src/filter/filter.js';

/** The filter language of API.md §5, as one pure module (src/filter/filter.ts). */

const event = {
  id: '0193a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b',
  type: 'order.paid',
  payload: {
    amount: 120,
    currency: 'EUR',
    user: { country: 'FR', vip: true },
    tags: ['a', 'b'],
    note: null,
    code: '120',
  },
  dedup_id: null,
  occurred_at: null,
  received_at: '2026-01-01T00:00:00.000Z',
};

const matches = (filter: unknown, on: Record<string, unknown> = event) => parseFilter(filter).match(on);

function refused(filter: unknown): string {
  try {
    parseFilter(filter);
  } catch (error) {
    assert.ok(error instanceof ApiError);
    assert.equal(error.code, 'validation_failed');
    assert.equal(error.details?.[0]?.field, 'filter');
    return error.details![0]!.message;
  }
  assert.fail(`accepted ${JSON.stringify(filter)}`);
}

describe('filter: matching', () => {
  test('literals are equality of the same JSON type; objects and arrays compare deeply', () => {
    assert.equal(matches({ type: 'order.paid' }), true);
    assert.equal(matches({ 'payload.amount': 120 }), true);
    assert.equal(matches({ 'payload.amount': '120' }), false);
    assert.equal(matches({ 'payload.code': 120 }), false);
    assert.equal(matches({ 'payload.user': { vip: true, country: 'FR' } }), true);
    assert.equal(matches({ 'payload.tags': ['a', 'b'] }), true);
    assert.equal(matches({ 'payload.tags': ['b', 'a'] }), false);
    assert.equal(matches({ 'payload.tags.1': 'b' }), true);
    assert.equal(matches({ 'payload.note': null }), true);
    assert.equal(matches({ 'payload.missing': null }), false);
    assert.equal(matches({}), true);
  });

  test('operators', () => {
    assert.equal(matches({ 'payload.amount': { $gt: 100, $lte: 120 } }), true);
    assert.equal(matches({ 'payload.amount': { $gt: 120 } }), false);
    assert.equal(matches({ 'payload.amount': { $gte: '100' } }), false, 'a number never compares with a string');
    assert.equal(matches({ 'payload.currency': { $lt: 'F' } }), true);
    assert.equal(matches({ 'payload.currency': { $in: ['USD', 'EUR'] } }), true);
    assert.equal(matches({ 'payload.amount': { $in: ['120'] } }), false);
    assert.equal(matches({ 'payload.currency': { $nin: ['USD'] } }), true);
    assert.equal(matches({ type: { $prefix: 'order.' } }), true);
    assert.equal(matches({ 'payload.amount': { $prefix: '1' } }), false);
    assert.equal(matches({ 'payload.user.vip': { $eq: true } }), true);
    assert.equal(matches({ 'payload.user.vip': { $ne: false } }), true);
    assert.equal(matches({ $or: [{ type: 'x' }, { 'payload.user.country': 'FR' }] }), true);
    assert.equal(matches({ $and: [{ type: 'order.paid' }, { 'payload.amount': { $lt: 100 } }] }), false);
  });

  test('a missing path matches only $exists: false and $ne', () => {
    const path = 'payload.nope.deeper';
    assert.equal(matches({ [path]: { $exists: false } }), true);
    assert.equal(matches({ [path]: { $ne: 1 } }), true);
    for (const operator of [
      { $eq: 1 },
      { $gt: 0 },
      { $gte: 0 },
      { $lt: 0 },
      { $lte: 0 },
      { $in: [1] },
      { $nin: [1] },
      { $prefix: '' },
      { $exists: true },
    ]) {
      assert.equal(matches({ [path]: operator }), false, JSON.stringify(operator));
    }
    assert.equal(matches({ 'payload.amount': { $exists: true } }), true);
    assert.equal(matches({ 'payload.note': { $exists: true } }), true, 'null is a value, not a missing path');
  });
});

describe('filter: validation (422, field "filter")', () => {
  test('unknown operators, wrong operand types, bad paths and mixed objects are refused', () => {
    assert.match(refused({ 'payload.a': { $regex: 'x' } }), /unknown operator \$regex/);
    assert.match(refused({ $not: {} }), /unknown operator \$not/);
    assert.match(refused({ 'payload.a': { $in: 1 } }), /\$in takes a list/);
    assert.match(refused({ 'payload.a': { $gt: true } }), /number or a string/);
    assert.match(refused({ 'payload.a': { $exists: 1 } }), /\$exists/);
    assert.match(refused({ 'payload.a': { $prefix: 1 } }), /\$prefix/);
    assert.match(refused({ $and: [] }), /non-empty list/);
    assert.match(refused({ $or: [1] }), /filter object/);
    assert.match(refused({ amount: 1 }), /starts with one of the event's fields/);
    assert.match(refused({ 'payload..a': 1 }), /dotted names/);
    assert.match(refused({ 'payload.a': { $gt: 1, lt: 5 } }), /only \$ keys/);
    assert.match(refused([]), /JSON object/);
    assert.match(refused('x'), /JSON object/);
  });

  test('over 8 KiB or nested more than 10 levels is refused; 10 levels are fine', () => {
    assert.match(
      refused({ 'payload.a': { $in: Array.from({ length: MAX_FILTER_BYTES / 4 }, (_, i) => i) } }),
      /bytes serialized/,
    );
    const nest = (levels: number): Record<string, unknown> =>
      levels === 1 ? { type: 'x' } : { $and: [nest(levels - 1)] };
    assert.equal(parseFilter(nest(10)).match({ type: 'x' }), true);
    assert.match(refused(nest(11)), /more than 10 levels/);
    let deep: unknown = 1;
    for (let i = 0; i < 11; i++) deep = [deep];
    assert.match(refused({ 'payload.a': deep }), /value nests/);
  });

  test('readsPayload says whether the payload must be parsed', () => {
    assert.equal(parseFilter({ type: 'a' }).readsPayload, false);
    assert.equal(parseFilter({ $or: [{ type: 'a' }, { 'payload.x': 1 }] }).readsPayload, true);
  });
});

describe('filter: properties', () => {
  const json = fc.jsonValue({ maxDepth: 3 });

  test('a literal always matches itself and $eq agrees with it; $ne is its negation when present', () => {
    fc.assert(
      fc.property(json, (value) => {
        const on = { ...event, payload: { v: value } };
        const literal =
          value !== null &&
          typeof value === 'object' &&
          !Array.isArray(value) &&
          Object.keys(value).some((key) => key.startsWith('$'));
        fc.pre(!literal);
        assert.equal(parseFilter({ 'payload.v': value }).match(on), true);
        assert.equal(parseFilter({ 'payload.v': { $eq: value } }).match(on), true);
        assert.equal(parseFilter({ 'payload.v': { $ne: value } }).match(on), false);
        assert.equal(parseFilter({ 'payload.v': { $in: [value] } }).match(on), true);
        assert.equal(parseFilter({ 'payload.v': { $nin: [value] } }).match(on), false);
      }),
    );
  });

  test('numbers and strings never match each other under any comparison', () => {
    fc.assert(
      fc.property(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.string(), (number, text) => {
        for (const operator of ['$eq', '$gt', '$gte', '$lt', '$lte']) {
          assert.equal(parseFilter({ 'payload.n': { [operator]: text } }).match({ payload: { n: number } }), false);
          assert.equal(parseFilter({ 'payload.s': { [operator]: number } }).match({ payload: { s: text } }), false);
        }
      }),
    );
  });

  test('$and is every part, $or is some part', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 1, maxLength: 5 }),
        fc.integer({ min: 0, max: 5 }),
        (wanted, actual) => {
          const parts = wanted.map((n) => ({ 'payload.n': n }));
          const on = { payload: { n: actual } };
          assert.equal(
            parseFilter({ $and: parts }).match(on),
            wanted.every((n) => n === actual),
          );
          assert.equal(
            parseFilter({ $or: parts }).match(on),
            wanted.some((n) => n === actual),
          );
        },
      ),
    );
  });
});
