import { isEventId } from '../ids.js';

/**
 * Cursors of GET /v1/events: the id of the last event a page examined (newest first, so the next
 * page holds ids strictly below it) and the walk's `since` as resolved on its first page, so a
 * walk that relies on the default window ("the last 24 hours") keeps the window it started with
 * instead of losing its oldest events while it pages. base64url, so clients treat it as opaque.
 * Layout (25 bytes): version, the id's 16 bytes, since as signed 64-bit big-endian milliseconds.
 */
export interface EventListPosition {
  /** Events strictly below this id (uuid order, which is received_at order: src/ids.ts). */
  beforeId: string;
  sinceMs: number;
}

const VERSION = 1;
const BYTES = 25;
const ENCODED_LENGTH = 34; // ceil(25 * 4 / 3) without padding
const BASE64URL_RE = /^[A-Za-z0-9_-]+$/;

export function encodeListCursor(position: EventListPosition): string {
  const bytes = Buffer.allocUnsafe(BYTES);
  bytes[0] = VERSION;
  bytes.write(position.beforeId.replace(/-/g, ''), 1, 16, 'hex');
  bytes.writeBigInt64BE(BigInt(position.sinceMs), 17);
  return bytes.toString('base64url');
}

/** The position, or null for text this API did not issue. */
export function decodeListCursor(text: string): EventListPosition | null {
  if (text.length !== ENCODED_LENGTH || !BASE64URL_RE.test(text)) return null;
  const bytes = Buffer.from(text, 'base64url');
  // Re-encoding must give the same text: rejects non-canonical trailing bits.
  if (bytes.length !== BYTES || bytes.toString('base64url') !== text || bytes[0] !== VERSION) return null;
  const sinceMs = bytes.readBigInt64BE(17);
  // Any time an RFC 3339 timestamp of years 0001-9999 can name.
  if (sinceMs < -62_135_596_800_000n || sinceMs > 253_402_300_799_999n) return null;
  const hex = bytes.toString('hex', 1, 17);
  const beforeId = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  // Issued cursors hold an event's id. Another id's time may lie past year 9999, which the page
  // query cannot send as a received_at bound (Postgres refused it: a 500 before this check).
  if (!isEventId(beforeId)) return null;
  return { beforeId, sinceMs: Number(sinceMs) };
}
