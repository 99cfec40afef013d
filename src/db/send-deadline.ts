/**
 * A flush's send deadline: the moment (performance.now() milliseconds) after which it must not
 * send its rows. 503 means nothing was stored (API.md §1), and the batcher answers 503 when a flush
 * has not finished in time; rows sent after the deadline could still commit after that answer. So
 * a writer that gets its connection, or gets to the point of sending, only after the deadline
 * gives up without sending. Rows sent before it are bounded by statement_timeout instead
 * (src/ingest/batcher.ts says how the two are set apart).
 */
export class SendDeadlineExceeded extends Error {
  /** Not a SQLSTATE: read as an outage (503) by every classifier, never as a refusal of the data. */
  readonly code = 'SEND_DEADLINE_EXCEEDED';

  /** `why`: what came too late, e.g. "no COPY connection was free". */
  constructor(why: string) {
    super(`${why} by the flush's send deadline; nothing was sent`);
    this.name = 'SendDeadlineExceeded';
  }
}

/** No deadline: a writer called without one never gives up. */
export const NO_DEADLINE = Number.POSITIVE_INFINITY;

/** Throws SendDeadlineExceeded once `sendBy` has passed: called just before the rows go out. */
export function checkSendDeadline(sendBy: number, what: string): void {
  if (performance.now() > sendBy) throw new SendDeadlineExceeded(`${what} was not ready`);
}

/**
 * `pending` (a connection being taken), unless `sendBy` comes first: then rejects with
 * SendDeadlineExceeded, and hands the value to `giveBack` whenever it arrives after all.
 */
export function takeBefore<T>(
  pending: Promise<T>,
  sendBy: number,
  what: string,
  giveBack: (late: T) => void,
): Promise<T> {
  if (sendBy === NO_DEADLINE) return pending;
  return new Promise<T>((resolve, reject) => {
    let late = false;
    const timer = setTimeout(
      () => {
        late = true;
        reject(new SendDeadlineExceeded(what));
      },
      Math.max(0, sendBy - performance.now()),
    );
    pending.then(
      (value) => {
        clearTimeout(timer);
        if (late) giveBack(value);
        else resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        if (!late) reject(error);
      },
    );
  });
}
