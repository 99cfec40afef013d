/**
 * Inbox cursors: a position in the org's seq order of events (sql/007_org_sequence.sql),
 * base64url-encoded so clients treat it as opaque. Layout (26 bytes): version, order (0 asc, 1
 * desc), seq as unsigned 64-bit big-endian, the event id's 16 bytes. The order is inside so a
 * cursor cannot silently be replayed in the other direction, where it would mean something else.
 *
 * Version 1 held an xid8 (the order before 007). Such a cursor reads as the start of its order:
 * the inbox holds only unacknowledged events, so a consumer polling across the upgrade sees the
 * ones it has not acknowledged again, and misses none.
 */
export type InboxOrder = 'asc' | 'desc';

export interface InboxPosition {
  /** The event's seq as a decimal string (a bigint). */
  seq: string;
  id: string;
}

const VERSION = 2;
const VERSION_XID = 1;
const BYTES = 26;
const ENCODED_LENGTH = 35; // ceil(26 * 4 / 3) without padding
const BASE64URL_RE = /^[A-Za-z0-9_-]+$/;
/** bigint's largest value: a seq above it cannot be compared in SQL. */
const MAX_SEQ = (1n << 63n) - 1n;

/** Before every row in ascending order: seqs start at 1. */
export const ASC_START: InboxPosition = { seq: '0', id: '00000000-0000-0000-0000-000000000000' };
/** After every row, so descending order starts from the newest. */
export const DESC_START: InboxPosition = { seq: MAX_SEQ.toString(), id: 'ffffffff-ffff-ffff-ffff-ffffffffffff' };

export function encodeCursor(order: InboxOrder, position: InboxPosition): string {
  const bytes = Buffer.allocUnsafe(BYTES);
  bytes[0] = VERSION;
  bytes[1] = order === 'asc' ? 0 : 1;
  bytes.writeBigUInt64BE(BigInt(position.seq), 2);
  bytes.write(position.id.replace(/-/g, ''), 10, 16, 'hex');
  return bytes.toString('base64url');
}

/** Why a cursor was refused, for the 422 details. */
export type CursorProblem = 'malformed' | 'order';

export function decodeCursor(text: string, order: InboxOrder): InboxPosition | CursorProblem {
  if (text.length !== ENCODED_LENGTH || !BASE64URL_RE.test(text)) return 'malformed';
  const bytes = Buffer.from(text, 'base64url');
  // Re-encoding must give the same text: rejects non-canonical trailing bits.
  if (bytes.length !== BYTES || bytes.toString('base64url') !== text) return 'malformed';
  if (bytes[0] !== VERSION && bytes[0] !== VERSION_XID) return 'malformed';
  if (bytes[1]! > 1) return 'malformed';
  if ((bytes[1] === 0 ? 'asc' : 'desc') !== order) return 'order';
  if (bytes[0] === VERSION_XID) return order === 'asc' ? ASC_START : DESC_START;
  const seq = bytes.readBigUInt64BE(2);
  if (seq > MAX_SEQ) return 'malformed';
  const hex = bytes.toString('hex', 10, 26);
  return {
    seq: seq.toString(),
    id:
      hex.slice(0, 8) +
      '-' +
      hex.slice(8, 12) +
      '-' +
      hex.slice(12, 16) +
      '-' +
      hex.slice(16, 20) +
      '-' +
      hex.slice(20),
  };
}
