import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseTimestamptz } from '../src/db/timestamps.js';

/** timestamptz text as Postgres prints it (DateStyle ISO), read into the same instant. */
test('timestamptz text: every year, fraction and offset Postgres prints', () => {
  const cases: Array<[string, string]> = [
    ['2026-11-30 06:33:28.779+00', '2026-11-30T06:33:28.779Z'],
    ['0001-01-01 00:00:00+00', '0001-01-01T00:00:00.000Z'],
    ['0099-12-31 23:59:59.999+00', '0099-12-31T23:59:59.999Z'],
    ['1970-01-01 05:30:00+05:30', '1970-01-01T00:00:00.000Z'],
    ['2026-01-01 00:00:00.123456-03', '2026-01-01T03:00:00.123Z'],
    ['2026-01-01 00:00:00.5+00', '2026-01-01T00:00:00.500Z'],
    ['1900-01-01 00:00:00+00:09:21', '1899-12-31T23:50:39.000Z'],
    ['10000-01-01 00:00:00+00', '+010000-01-01T00:00:00.000Z'],
  ];
  for (const [text, iso] of cases) assert.equal(parseTimestamptz(text).toISOString(), iso, text);
});

test('what is not a plain timestamptz (infinity, BC) is left to new Date, as before', () => {
  assert.ok(Number.isNaN(parseTimestamptz('infinity').getTime()));
  assert.ok(Number.isNaN(parseTimestamptz('0001-01-01 00:00:00+00 BC').getTime()));
});
