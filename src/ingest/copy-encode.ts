/**
 * COPY … FROM STDIN text format. Every value here was validated first (no NUL, well-formed
 * Unicode): a row the server rejects mid-COPY would fail the whole batch, and with the
 * `postgres` client's COPY bug (#1173) could leave the stream hanging.
 */

// Text format escapes: backslash, and the characters that delimit columns and rows.
const NEEDS_ESCAPE = /[\\\t\n\r]/;
const ESCAPES = /[\\\t\n\r]/g;
const ESCAPED: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

export function copyText(value: string): string {
  return NEEDS_ESCAPE.test(value) ? value.replace(ESCAPES, (ch) => ESCAPED[ch]!) : value;
}

/** Serialised JSON has no raw tab or newline (JSON.stringify escapes them); only backslashes. */
export function copyJson(json: string): string {
  return json.indexOf('\\') === -1 ? json : json.replaceAll('\\', '\\\\');
}

export const COPY_NULL = '\\N';

/*
 * COPY … FROM STDIN (FORMAT binary): what firehose flushes of BINARY_COPY_MIN_ROWS or more send
 * (src/ingest/batcher.ts). Postgres no longer parses two UUIDs and one or two timestamps from text
 * per row, nor splits and unescapes the line: ~2 µs less per row at 16-64 rows a COPY, but ~9 µs
 * more for a COPY of one row (docs/PERFORMANCE.md).
 */

const BINARY_HEADER = Buffer.from([
  0x50, 0x47, 0x43, 0x4f, 0x50, 0x59, 0x0a, 0xff, 0x0d, 0x0a, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
]);
const FIELDS_PER_ROW = 9;
// Per row without the strings: field count, nine lengths, two UUIDs, two timestamps, an int4.
const FIXED_ROW_BYTES = 2 + FIELDS_PER_ROW * 4 + 16 + 16 + 8 + 8 + 4;
/** Postgres timestamps count microseconds from 2000-01-01 UTC. */
const POSTGRES_EPOCH_MS = 946_684_800_000;
// Beyond this many milliseconds from that epoch (about 285 years) microseconds are no longer
// exact in a double: such timestamps go through BigInt.
const EXACT_MS = Math.floor(Number.MAX_SAFE_INTEGER / 1000);
const TWO_32 = 2 ** 32;

const HEX = new Int8Array(128).fill(-1);
for (let i = 0; i < 10; i++) HEX[0x30 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX[0x61 + i] = 10 + i;
  HEX[0x41 + i] = 10 + i;
}

function writeLength(buffer: Buffer, offset: number, length: number): void {
  buffer[offset] = length >>> 24;
  buffer[offset + 1] = length >>> 16;
  buffer[offset + 2] = length >>> 8;
  buffer[offset + 3] = length;
}

/** A canonical UUID string (8-4-4-4-12 hex digits) as its 16 bytes, after its length. */
function writeUuid(buffer: Buffer, offset: number, uuid: string): number {
  writeLength(buffer, offset, 16);
  offset += 4;
  for (let i = 0; i < 36; i += 2) {
    if (i === 8 || i === 13 || i === 18 || i === 23) i++;
    buffer[offset++] = (HEX[uuid.charCodeAt(i)]! << 4) | HEX[uuid.charCodeAt(i + 1)]!;
  }
  return offset;
}

function writeTimestamp(buffer: Buffer, offset: number, epochMs: number): number {
  writeLength(buffer, offset, 8);
  const ms = epochMs - POSTGRES_EPOCH_MS;
  if (ms > -EXACT_MS && ms < EXACT_MS) {
    const us = ms * 1000;
    const high = Math.floor(us / TWO_32);
    writeLength(buffer, offset + 4, high);
    writeLength(buffer, offset + 8, us - high * TWO_32);
  } else {
    buffer.writeBigInt64BE(BigInt(ms) * 1000n, offset + 4);
  }
  return offset + 12;
}

const digit = (text: string, at: number) => text.charCodeAt(at) - 0x30;
const digits = (text: string, at: number, count: number) => {
  let value = 0;
  for (let i = 0; i < count; i++) value = value * 10 + digit(text, at + i);
  return value;
};

/**
 * Milliseconds of an RFC 3339 UTC time as isoMs writes it (2026-11-30T00:36:24.123Z), read
 * directly: Date.parse was a fifth of this encoder's time. Anything else goes to Date.parse.
 */
export function isoMsToEpoch(iso: string): number {
  if (iso.length !== 24 || iso.charCodeAt(23) !== 0x5a || iso.charCodeAt(10) !== 0x54) return Date.parse(iso);
  const year = digits(iso, 0, 4);
  // Date.UTC reads years 0-99 as 1900-1999.
  if (year < 100) return Date.parse(iso);
  return Date.UTC(
    year,
    digits(iso, 5, 2) - 1,
    digits(iso, 8, 2),
    digits(iso, 11, 2),
    digits(iso, 14, 2),
    digits(iso, 17, 2),
    digits(iso, 20, 3),
  );
}

// Buffer#write's own argument handling is a third of a short string's cost; utf8Write is the
// method it ends in (present on Buffer.prototype since Node 0.x, untyped).
type Utf8Writer = Buffer & { utf8Write(value: string, offset: number): number };

/** A string as UTF-8 with its length in front; `null` as SQL NULL. */
function writeText(buffer: Buffer, offset: number, value: string | null): number {
  if (value === null) {
    writeLength(buffer, offset, -1);
    return offset + 4;
  }
  const bytes = (buffer as Utf8Writer).utf8Write(value, offset + 4);
  writeLength(buffer, offset, bytes);
  return offset + 4 + bytes;
}

/** An event type (validated: 1-128 ASCII characters) with its length in front. */
function writeAscii(buffer: Buffer, offset: number, value: string): number {
  writeLength(buffer, offset, value.length);
  offset += 4;
  for (let i = 0; i < value.length; i++) buffer[offset++] = value.charCodeAt(i);
  return offset;
}

export interface BinaryRow {
  orgId: string;
  id: string;
  /** RFC 3339 UTC with milliseconds, as answered to the client. */
  receivedAt: string;
  event: {
    type: string;
    payloadJson: string;
    dedupId: string | null;
    occurredAt: string | null;
    schemaVersion: number | null;
    orderingKey: string | null;
  };
}

/**
 * The whole COPY data for `rows` in binary format (header, tuples, trailer), for the columns of
 * COPY_EVENTS_BINARY. Strings are written once, straight into a buffer sized for the worst case
 * (three UTF-8 bytes per UTF-16 unit), and the buffer is trimmed to what was written.
 */
export function encodeBinaryRows(rows: ReadonlyArray<BinaryRow>): Buffer {
  let capacity = BINARY_HEADER.length + 2;
  for (const row of rows) {
    const event = row.event;
    capacity +=
      FIXED_ROW_BYTES +
      3 *
        (event.type.length +
          event.payloadJson.length +
          (event.dedupId?.length ?? 0) +
          (event.orderingKey?.length ?? 0));
  }
  const buffer = Buffer.allocUnsafe(capacity);
  let offset = BINARY_HEADER.copy(buffer, 0);
  // A batch request's rows share their received_at: read each distinct one once.
  let lastReceivedAt = '';
  let lastReceivedMs = 0;
  // Likewise most rows of a flush belong to the org of the row before: copy its bytes.
  let lastOrgId = '';
  let lastOrgOffset = 0;
  for (const row of rows) {
    const event = row.event;
    buffer[offset] = 0;
    buffer[offset + 1] = FIELDS_PER_ROW;
    offset += 2;
    if (row.orgId === lastOrgId) {
      buffer.copyWithin(offset, lastOrgOffset, lastOrgOffset + 20);
      offset += 20;
    } else {
      lastOrgId = row.orgId;
      lastOrgOffset = offset;
      offset = writeUuid(buffer, offset, row.orgId);
    }
    offset = writeUuid(buffer, offset, row.id);
    offset = writeAscii(buffer, offset, event.type);
    offset = writeText(buffer, offset, event.payloadJson);
    offset = writeText(buffer, offset, event.dedupId);
    if (event.occurredAt === null) {
      writeLength(buffer, offset, -1);
      offset += 4;
    } else {
      offset = writeTimestamp(buffer, offset, isoMsToEpoch(event.occurredAt));
    }
    if (row.receivedAt !== lastReceivedAt) {
      lastReceivedAt = row.receivedAt;
      lastReceivedMs = isoMsToEpoch(row.receivedAt);
    }
    offset = writeTimestamp(buffer, offset, lastReceivedMs);
    if (event.schemaVersion === null) {
      writeLength(buffer, offset, -1);
      offset += 4;
    } else {
      writeLength(buffer, offset, 4);
      writeLength(buffer, offset + 4, event.schemaVersion);
      offset += 8;
    }
    offset = writeText(buffer, offset, event.orderingKey);
  }
  buffer.writeInt16BE(-1, offset);
  return buffer.subarray(0, offset + 2);
}
