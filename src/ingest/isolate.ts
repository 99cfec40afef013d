import { ApiError } from '../errors.js';
import { log } from '../log.js';
import type { PendingFlushRow } from './dedup-flush.js';

/**
 * One event must not fail its neighbours (API.md §3): when Postgres refuses a flush for its data,
 * the flush is split and written again until only the events it refuses are left, and those alone
 * are answered 422. Validation (validate.ts) checks every value against what its column takes, so
 * this runs only for what it could not foresee (a CHECK or trigger added by an operator, a
 * database encoding other than UTF8, a bug): it costs nothing until a flush fails.
 *
 * Each write is a transaction of its own (a COPY, or the one dedup statement), and a refused one
 * stored nothing, so writing its rows again cannot store one twice. Outages (anything but a data
 * refusal, see isDataRefusal) are thrown as they are: the batcher answers 503 for every event not
 * answered yet.
 */

/** Writes `rows` in one transaction and answers each of them; throws when nothing was stored. */
export type FlushWrite<T> = (rows: T[]) => Promise<number>;

/** SQLSTATE classes that blame a value: 22 data exception, 23 integrity constraint violation. */
const DATA_CLASSES = new Set(['22', '23']);
// Program limits a value can hit: 54000 (e.g. an index row too large), 54001 (too deeply nested).
const DATA_CODES = new Set(['54000', '54001']);

/**
 * True when Postgres refused the data of a flush rather than being unable to run it. A row that no
 * partition takes (23514 without a constraint's name) is the server's fault, not the event's: its
 * received_at is the server's clock, and every event of that moment fails alike; it stays a 503.
 */
export function isDataRefusal(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code !== 'string' || code.length !== 5) return false;
  if (code === '23514' && !(error as { constraint_name?: unknown }).constraint_name) return false;
  return DATA_CLASSES.has(code.slice(0, 2)) || DATA_CODES.has(code);
}

// Invalid datetime format, datetime field overflow, invalid time zone displacement.
const DATETIME_CODES = new Set(['22007', '22008', '22009']);

/** The answer to an event Postgres refused on its own: 422, saying which rule it broke. */
export function unstorableEvent(error: unknown): ApiError {
  const { code, message } = error as { code: string; message: string };
  // The message is about this one row (a flush of one event): its own values, a constraint's name.
  const reason = String(message).slice(0, 200);
  return new ApiError('validation_failed', 'The event cannot be stored: the database refused one of its values.', [
    {
      field: DATETIME_CODES.has(code) ? 'occurred_at' : 'event',
      message: `cannot be stored (SQLSTATE ${code}: ${reason})`,
    },
  ]);
}

/**
 * `write(rows)`; if Postgres refuses it for its data, each org's events are written apart (so an
 * org with no bad event costs one more flush, whatever another org sends), then the orgs whose
 * write was refused are halved until the refused events stand alone. Resolves with the number of
 * events stored; every event is answered, except after an outage, which is thrown.
 */
export async function writeIsolating<T extends PendingFlushRow>(rows: T[], write: FlushWrite<T>): Promise<number> {
  try {
    return await write(rows);
  } catch (error) {
    if (!isDataRefusal(error)) throw error;
    if (rows.length === 1) return refuse(rows[0]!, error);
  }
  const byOrg = new Map<string, T[]>();
  for (const row of rows) {
    const group = byOrg.get(row.orgId);
    if (group) group.push(row);
    else byOrg.set(row.orgId, [row]);
  }
  if (byOrg.size === 1) return bisect(rows, write);
  let stored = 0;
  const refused: T[][] = [];
  for (const group of byOrg.values()) {
    try {
      stored += await write(group);
    } catch (error) {
      if (!isDataRefusal(error)) throw error;
      if (group.length === 1) refuse(group[0]!, error);
      else refused.push(group);
    }
  }
  for (const group of refused) stored += await bisect(group, write);
  return stored;
}

/** `rows` were refused together: write each half, and halve again what is refused. */
async function bisect<T extends PendingFlushRow>(rows: T[], write: FlushWrite<T>): Promise<number> {
  const middle = rows.length >>> 1;
  let stored = 0;
  for (const half of [rows.slice(0, middle), rows.slice(middle)]) {
    try {
      stored += await write(half);
    } catch (error) {
      if (!isDataRefusal(error)) throw error;
      stored += half.length === 1 ? refuse(half[0]!, error) : await bisect(half, write);
    }
  }
  return stored;
}

function refuse(row: PendingFlushRow, error: unknown): number {
  const { code, message } = error as { code: string; message: string };
  log.warn(
    { org: row.orgId, event: row.id, sqlstate: code, err: message },
    'Postgres refused one event of a flush; answering 422 for it alone',
  );
  row.reject(unstorableEvent(error));
  return 0;
}
