import type { Sql } from '../db/connect.js';
import type { CopyWriter } from '../db/client-copy.js';
import { type ApiError, unavailable } from '../errors.js';
import { isoMs, uuidv7 } from '../ids.js';
import { log } from '../log.js';
import { publishFlushFinished } from './channels.js';
import { announceCommitted, type CommittedListener } from './committed.js';
import { COPY_NULL, copyJson, copyText, encodeBinaryRows } from './copy-encode.js';
import { flushWithDedup, type IngestOutcome } from './dedup-flush.js';
import { writeIsolating } from './isolate.js';
import { FLUSH_FENCE } from './sequence.js';
import type { ValidEvent } from './validate.js';

export type { IngestOutcome } from './dedup-flush.js';

/** What `enqueue` resolves with: each event's outcome, or the error that refused it, in order. */
export type EventResult = IngestOutcome | ApiError;

/**
 * The events of one request: one promise for all of them, settled when the last one is. A batch
 * request makes one of these instead of a promise per event.
 */
class RequestEvents {
  readonly results: EventResult[];
  private remaining: number;

  constructor(
    count: number,
    private readonly done: (results: EventResult[]) => void,
  ) {
    this.results = new Array<EventResult>(count);
    this.remaining = count;
  }

  settle(index: number, result: EventResult): void {
    this.results[index] = result;
    if (--this.remaining === 0) this.done(this.results);
  }
}

class PendingEvent {
  /**
   * An event is answered once: a flush that timed out refuses its events, and its COPY may still
   * complete afterwards (the server cancels it at statement_timeout, but the client may hear back
   * later). That late word must not count the event a second time.
   */
  private settled = false;

  constructor(
    readonly orgId: string,
    readonly id: string,
    readonly receivedAt: string,
    readonly event: ValidEvent,
    private readonly request: RequestEvents,
    private readonly index: number,
  ) {}

  /** The first event of its request: a flush may end only before one (EventBatcher.batchLength). */
  get startsRequest(): boolean {
    return this.index === 0;
  }

  resolve(outcome: IngestOutcome): void {
    if (this.settled) return;
    this.settled = true;
    this.request.settle(this.index, outcome);
  }

  reject(error: ApiError): void {
    if (this.settled) return;
    this.settled = true;
    this.request.settle(this.index, error);
  }
}

export interface BatcherOptions {
  maxBatchRows: number;
  flushConcurrency: number;
  maxQueuedEvents: number;
  flushTimeoutMs: number;
  dedupWindowHours: number;
}

export const COPY_EVENTS =
  'copy events (org_id, id, type, payload, dedup_id, occurred_at, received_at, schema_version, ordering_key) from stdin';
/** The same columns in binary format (encodeBinaryRows), for large firehose flushes. */
export const COPY_EVENTS_BINARY = COPY_EVENTS + ' with (format binary)';
/**
 * Flushes of at least this many rows go in binary format, smaller ones in text. Measured
 * (bench/copy-batch-cost.ts, docs/PERFORMANCE.md): binary saves Postgres ~2 µs a row at 16-64
 * rows and ~1 µs at 1 000, but costs ~9 µs more per COPY of one row, and its encoder costs the
 * HTTP worker more than text's at a dozen rows; in bench:load, binary made single-event ingest
 * (flushes of ~10-20 rows) +3 µs of CPU per event and batch ingest -1.4 µs.
 */
export const BINARY_COPY_MIN_ROWS = 64;

/** A flush that outlived FLUSH_TIMEOUT_MS: its events are answered 503 (cause flush_timeout, not storage). */
class FlushTimeout extends Error {}

/**
 * A flush takes queued events up to MAX_BATCH_ROWS and up to this many characters of text
 * (payloads, types and dedup ids; flushCharacters). Without it, 5 000 queued payloads of 256 KiB
 * made one flush of 1.25 GiB: past V8's longest string (2^29 - 24 characters) and past the 1 GB
 * Postgres takes in one message, parameter or value, so the flush failed for every org in it.
 * 4 Mi characters (4 MiB of ASCII, at most 12 MiB of UTF-8) is far below both and bounds what each
 * of FLUSH_CONCURRENCY flushes holds in memory. It also keeps a flush's time far inside the statement
 * timeout on a loaded machine: at 16 Mi, a flush of 64 payloads of 256 KiB took 0.8 s alone here but
 * 5.2 s in a CI run beside other test files, past the 5 s timeout, and its 64 events were refused
 * (test/write-isolation-property.test.ts logs the time). Small events are not held back: 4 000
 * events of 1 KiB share one flush; 16 payloads of 256 KiB do. A request is never split
 * (batchLength), so one batch of up to 8 MiB is one flush, at most 8 Mi characters.
 */
export const FLUSH_MAX_CHARACTERS = 4 * 1024 * 1024;

/** The text one event adds to a flush, in characters (FLUSH_MAX_CHARACTERS). */
export function flushCharacters(event: ValidEvent): number {
  return (
    event.payloadJson.length +
    event.type.length +
    (event.dedupId === null ? 0 : event.dedupId.length) +
    (event.orderingKey === null ? 0 : event.orderingKey.length)
  );
}

/**
 * A flush sends its rows within this share of FLUSH_TIMEOUT_MS or not at all
 * (src/db/send-deadline.ts). statement_timeout is half of FLUSH_TIMEOUT_MS (src/cluster/http-app.ts),
 * so rows sent by 0.4 of it are committed or rolled back by 0.9 of it, before the batcher answers
 * 503 at the full timeout: a 503 never meets a commit that comes later. The last tenth is for the
 * answer's way back.
 */
export const SEND_WINDOW_OF_FLUSH_TIMEOUT = 0.4;

/**
 * Group commit. Requests enqueue validated events and wait; a flush takes the requests queued (up
 * to maxBatchRows and FLUSH_MAX_CHARACTERS, never part of one) and writes them in one transaction, fenced first
 * (sequence.ts): a COPY when no event carries a dedup_id, else one statement that takes the dedup
 * claims and inserts (dedup-flush.ts). A flush
 * starts as soon as a connection slot is free, so batches stay small when idle and grow under
 * load. Each event's promise settles only after COMMIT (202) or after the flush failed (503 for
 * exactly the events of that flush). A flush Postgres refuses for its data is written again in
 * parts, so only the events it refuses get 422 (isolate.ts).
 */
export class EventBatcher {
  private queue: PendingEvent[] = [];
  private flushing = 0;
  private scheduled = false;
  private idleWaiters: Array<() => void> = [];

  /**
   * `copyPool` writes batches without dedup claims (the firehose); `sql` runs the dedup statements
   * (dedup-flush.ts). `onCommitted` hears the orgs of each flush's stored events, after the commit.
   */
  constructor(
    private readonly sql: Sql,
    private readonly copyPool: CopyWriter,
    private readonly options: BatcherOptions,
    private readonly onCommitted: CommittedListener | null = null,
  ) {}

  get queued(): number {
    return this.queue.length;
  }

  /**
   * Queues one request's events; resolves once every one of them is committed or refused, with
   * the results in order. Throws 503 at once when the queue is full: overload is refused, not buffered.
   */
  enqueue(orgId: string, events: ValidEvent[], receivedAtMs: number): Promise<EventResult[]> {
    if (this.queue.length + events.length > this.options.maxQueuedEvents) {
      throw unavailable('Server is overloaded; retry shortly.', 1, 'overloaded');
    }
    const receivedAt = isoMs(receivedAtMs);
    return new Promise((done) => {
      const request = new RequestEvents(events.length, done);
      for (let i = 0; i < events.length; i++) {
        // The id's timestamp is received_at, so a look-up by id finds its partition.
        this.queue.push(new PendingEvent(orgId, uuidv7(receivedAtMs), receivedAt, events[i]!, request, i));
      }
      this.schedule();
    });
  }

  /** Resolves when nothing is queued or being flushed. */
  drained(): Promise<void> {
    if (this.queue.length === 0 && this.flushing === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private schedule(): void {
    if (this.scheduled || this.flushing >= this.options.flushConcurrency) return;
    this.scheduled = true;
    // setImmediate, not a timer: requests that arrived in the same event-loop turn join this batch.
    setImmediate(() => {
      this.scheduled = false;
      this.startFlush();
    });
  }

  private startFlush(): void {
    if (this.queue.length === 0 || this.flushing >= this.options.flushConcurrency) return;
    const rows = this.batchLength();
    const batch = rows === this.queue.length ? this.queue : this.queue.slice(0, rows);
    this.queue = batch === this.queue ? [] : this.queue.slice(batch.length);
    this.flushing++;
    const started = performance.now();
    this.flushWithTimeout(batch)
      .then((stored) => publishFlushFinished(batch.length, started, true, stored))
      .catch((error: unknown) => {
        publishFlushFinished(batch.length, started, false, 0);
        log.error({ err: error, rows: batch.length }, 'flush failed; answering 503 for its events');
        const refusal = unavailable(
          'Storage is unavailable; the event was not stored.',
          1,
          error instanceof FlushTimeout ? 'flush_timeout' : 'storage',
        );
        for (const pending of batch) pending.reject(refusal);
      })
      .finally(() => {
        this.flushing--;
        if (this.queue.length > 0) this.schedule();
        else if (this.flushing === 0) for (const wake of this.idleWaiters.splice(0)) wake();
      });
    if (this.queue.length > 0) this.schedule();
  }

  /**
   * How many queued events the next flush takes: whole requests, up to maxBatchRows and
   * FLUSH_MAX_CHARACTERS; a first request past either goes whole and alone (a request is at most
   * 1 000 events and an 8 MiB body). Never part of a request: two flushes run at once and draw
   * their seqs in whichever order their writes reach Postgres, so a request split between them
   * could see its tail stored before its head, out of the order it was sent in, which `ordering:
   * "key"` and the inbox's order keep (seen: a batch of 25 payloads of 256 KiB read back out of
   * order once flushes held 16 of them).
   */
  private batchLength(): number {
    const queue = this.queue;
    let end = Math.min(queue.length, this.options.maxBatchRows);
    let characters = 0;
    for (let i = 0; i < end; i++) {
      characters += flushCharacters(queue[i]!.event);
      if (characters > FLUSH_MAX_CHARACTERS && i > 0) {
        end = i;
        break;
      }
    }
    if (end === queue.length || queue[end]!.startsRequest) return end;
    let start = end;
    while (start > 0 && !queue[start]!.startsRequest) start--;
    if (start > 0) return start;
    while (end < queue.length && !queue[end]!.startsRequest) end++;
    return end;
  }

  /**
   * The flush, answered 503 at FLUSH_TIMEOUT_MS if it has not finished. Its rows are sent by the
   * send deadline or never (SEND_WINDOW_OF_FLUSH_TIMEOUT), so that answer is true: nothing of it
   * commits later.
   */
  private flushWithTimeout(batch: PendingEvent[]): Promise<number> {
    let timer: NodeJS.Timeout;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new FlushTimeout(`flush timed out after ${this.options.flushTimeoutMs} ms`)),
        this.options.flushTimeoutMs,
      );
    });
    const sendBy = performance.now() + this.options.flushTimeoutMs * SEND_WINDOW_OF_FLUSH_TIMEOUT;
    const flush = writeIsolating(batch, (rows) => this.writeRows(rows, sendBy));
    return Promise.race([flush, timeout]).finally(() => clearTimeout(timer));
  }

  /**
   * One transaction for `rows`, answering each after its commit; throws (nothing stored) when it
   * fails. writeIsolating calls it again on parts of a batch that Postgres refused for its data.
   */
  private async writeRows(rows: PendingEvent[], sendBy: number): Promise<number> {
    if (!rows.some((pending) => pending.event.dedupId !== null)) {
      // No dedup claims: the fence, then COPY (each row's seq is drawn by its default) in one
      // transaction: one write and one round trip (copy-pool.ts), resolved after the commit.
      if (rows.length >= BINARY_COPY_MIN_ROWS)
        await this.copyPool.copyFenced(FLUSH_FENCE, COPY_EVENTS_BINARY, encodeBinaryRows(rows), sendBy);
      else await this.copyPool.copyFenced(FLUSH_FENCE, COPY_EVENTS, encodeCopyRows(rows), sendBy);
      for (const pending of rows)
        pending.resolve({ status: 'accepted', id: pending.id, receivedAt: pending.receivedAt });
      announceCommitted(this.onCommitted, rows);
      return rows.length;
    }
    let stored = 0;
    // Answers each event once its outcome is committed (or refused); see dedup-flush.ts.
    await flushWithDedup(
      this.sql,
      rows,
      this.options.dedupWindowHours,
      (committed) => {
        stored = committed.length;
        announceCommitted(this.onCommitted, committed);
      },
      sendBy,
    );
    return stored;
  }
}

/** The COPY text for a batch (one line per event). Pure, so it can be benchmarked alone. */
export function encodeCopyRows(
  rows: ReadonlyArray<{ orgId: string; id: string; receivedAt: string; event: ValidEvent }>,
): string {
  let text = '';
  for (const row of rows) {
    const event = row.event;
    text +=
      row.orgId +
      '\t' +
      row.id +
      '\t' +
      event.type +
      '\t' +
      copyJson(event.payloadJson) +
      '\t' +
      (event.dedupId === null ? COPY_NULL : copyText(event.dedupId)) +
      '\t' +
      (event.occurredAt ?? COPY_NULL) +
      '\t' +
      row.receivedAt +
      '\t' +
      (event.schemaVersion === null ? COPY_NULL : event.schemaVersion) +
      '\t' +
      (event.orderingKey === null ? COPY_NULL : copyText(event.orderingKey)) +
      '\n';
  }
  return text;
}
