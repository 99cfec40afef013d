import { randomFillSync } from 'node:crypto';

// Random bytes are drawn in blocks: one getrandom call per 512 ids instead of one per id.
const POOL_IDS = 512;
const pool = Buffer.alloc(POOL_IDS * 10);
let poolOffset = pool.length;
const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

let lastMs = 0;
let sequence = 0;

/**
 * A UUIDv7 whose timestamp is exactly `ms`. Ids made in the same millisecond by this process
 * sort in creation order (12-bit counter in rand_a), so ids are time-ordered as API.md asks.
 */
export function uuidv7(ms: number): string {
  if (poolOffset === pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  if (ms === lastMs) {
    sequence = (sequence + 1) & 0xfff;
  } else {
    lastMs = ms;
    sequence = pool[poolOffset]! & 0x7f; // start low so a burst rarely wraps the counter
  }
  const r = poolOffset;
  poolOffset += 10;
  const hi = Math.floor(ms / 0x10000);
  const lo = ms & 0xffff;
  const h = (hi >>> 0).toString(16).padStart(8, '0') + lo.toString(16).padStart(4, '0');
  return (
    h.slice(0, 8) +
    '-' +
    h.slice(8, 12) +
    '-' +
    HEX[0x70 | (sequence >>> 8)]! +
    HEX[sequence & 0xff]! +
    '-' +
    HEX[0x80 | (pool[r + 2]! & 0x3f)]! +
    HEX[pool[r + 3]!]! +
    '-' +
    HEX[pool[r + 4]!]! +
    HEX[pool[r + 5]!]! +
    HEX[pool[r + 6]!]! +
    HEX[pool[r + 7]!]! +
    HEX[pool[r + 8]!]! +
    HEX[pool[r + 9]!]!
  );
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isUuid(value: string): boolean {
  return value.length === 36 && UUID_RE.test(value);
}

// Past year 9999 an id's timestamp has no RFC 3339 form; no event of ours has one.
const MAX_ID_TIME = Date.UTC(9999, 11, 31);

/** A UUID whose UUIDv7 time could be an event's received_at: worth a look-up (a v4 may not be). */
export function isEventId(id: string): boolean {
  return isUuid(id) && uuidv7Time(id) < MAX_ID_TIME;
}

/** The millisecond timestamp inside a UUIDv7; events use it as received_at, so it prunes partitions. */
export function uuidv7Time(id: string): number {
  return parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
}

/**
 * The smallest UUIDv7 of millisecond `ms`: every id made at `ms` or later sorts at or above it,
 * every earlier one below (uuid order is byte order, and the time is the leading 48 bits).
 */
export function smallestUuidv7At(ms: number): string {
  const hex = ms.toString(16).padStart(12, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-7000-8000-000000000000`;
}

let lastIsoMs = NaN;
let lastIso = '';

/** RFC 3339 UTC with milliseconds. Under load many events share a millisecond: format it once. */
export function isoMs(ms: number): string {
  if (ms !== lastIsoMs) {
    lastIso = new Date(ms).toISOString();
    lastIsoMs = ms;
  }
  return lastIso;
}
