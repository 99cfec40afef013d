/**
 * Inbox cursors: a position in the (xid, id) order of events, base64url-encoded so clients treat
 * it as opaque. Layout (26 bytes): version, order (0 asc, 1 desc), xid8 as unsigned 64-bit
 * big-endian, the event id's 16 bytes. The order is inside so a cursor cannot silently be
 * replayed in the other direction, where it would mean something else.
 */
export type InboxOrder = 'asc' | 'desc';

export interface InboxPosition {
  /** xid8 as a decimal string (it can exceed 2^53). */
  xid: string;
  id: string;
}

const VERSION = 1;
const BYTES = 26;
const ENCODED_LENGTH = 35; // ceil(26 * 4 / 3) without padding
const BASE64URL_RE = /^[A-Za-z0-9_-]+$/;
const MAX_U64 = (1n << 64n) - 1n;

/** Before every row in ascending order: (xid 0, nil uuid); no real transaction has xid 0. */
export const ASC_START: InboxPosition = { xid: '0', id: '00000000-0000-0000-0000-000000000000' };
/** After every row, so descending order starts from the newest. */
export const DESC_START: InboxPosition = { xid: MAX_U64.toString(), id: 'ffffffff-ffff-ffff-ffff-ffffffffffff' };

export function encodeCursor(order: InboxOrder, position: InboxPosition): string {
  const bytes = Buffer.allocUnsafe(BYTES);
  bytes[0] = VERSION;
  bytes[1] = order === 'asc' ? 0 : 1;
  bytes.writeBigUInt64BE(BigInt(position.xid), 2);
  bytes.write(position.id.replace(/-/g, ''), 10, 16, 'hex');
  return bytes.toString('base64url');
}

/** Why a cursor was refused, for the 422 details. */
export type CursorProblem = 'malformed' | 'order';

export function decodeCursor(text: string, order: InboxOrder): InboxPosition | CursorProblem {
  if (text.length !== ENCODED_LENGTH || !BASE64URL_RE.test(text)) return 'malformed';
  const bytes = Buffer.from(text, 'base64url');
  // Re-encoding must give the same text: rejects non-canonical trailing bits.
  if (bytes.length !== BYTES || bytes.toString('base64url') !== text || bytes[0] !== VERSION) return 'malformed';
  if (bytes[1]! > 1) return 'malformed';
  if ((bytes[1] === 0 ? 'asc' : 'desc') !== order) return 'order';
  const hex = bytes.toString('hex', 10, 26);
  return {
    xid: bytes.readBigUInt64BE(2).toString(),
    id: hex.slice(0, 8) + '-' + hex.slice(8, 12) + '-' + hex.slice(12, 16) + '-' + hex.slice(16, 20) + '-' + hex.slice(20),
  };
}
