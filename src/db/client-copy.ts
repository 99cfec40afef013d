import type { Sql } from './connect.js';
import { checkSendDeadline, NO_DEADLINE, takeBefore } from './send-deadline.js';

/**
 * What the batcher's firehose flush needs: one autocommit `COPY … FROM STDIN` with `data` as its
 * whole data (text or binary, as the statement says), resolved after the commit. Chosen by
 * INGEST_COPY_CLIENT: CopyPool (copy-pool.ts, our own connections, one socket write per flush:
 * the default) or ClientCopy below (the `postgres` client, for diagnosis and as a fallback).
 */
export interface CopyWriter {
  copy(statement: string, data: string | Buffer, sendBy?: number): Promise<unknown>;
  /**
   * A fenced flush (src/ingest/sequence.ts): `fence`, then the COPY, in one transaction; resolved
   * after the commit. The batcher's firehose flush. Past `sendBy` (send-deadline.ts) it sends no
   * data: it fails with SendDeadlineExceeded, nothing stored.
   */
  copyFenced(fence: string, statement: string, data: string | Buffer, sendBy?: number): Promise<unknown>;
  close(): void;
}

/** The internals of the client's Query object that the #1173 work-around below reaches. */
interface ClientQuery {
  reject?: (error: Error) => void;
  writable(): Promise<NodeJS.WritableStream & { once(event: string, listener: (...args: any[]) => void): unknown }>;
}

/**
 * COPY through the `postgres` client, outside any transaction: `unsafe(copy).writable()` runs as
 * a simple-protocol statement, so it commits before CommandComplete, and the writable's 'finish'
 * (fired by CommandComplete) means the rows are durable. Two traps of the client (3.4.9):
 *
 * - It pipelines: a pool query may be written to a connection whose COPY has not yet reached
 *   copy-in. Postgres then reads that query's messages as COPY data and fails the COPY, and the
 *   next CommandComplete on the connection (the other query's) fires the COPY's 'finish': a 202
 *   for rows that were never stored (seen here before this guard). So each COPY runs on a
 *   connection reserved for it (`sql.reserve()`), which carries nothing else.
 * - porsager/postgres#1173: when the server rejects the data after CopyDone, the client never
 *   calls the writable's final callback, so 'finish' and 'error' never come (inside `sql.begin()`
 *   the ROLLBACK is never sent either: never COPY through the client in a transaction of ours).
 *   The client does hand the error to the query's `reject`, a no-op by then (its promise already
 *   resolved with the stream): we listen there too, so a refused COPY fails at once. Should a
 *   client version rename that hook, the connection stays reserved (never released while its
 *   COPY is unsettled) and the batcher's flush timeout answers 503; test/ingest.test.ts checks
 *   the prompt failure. After a failure the client keeps the stale callback and fires it at the
 *   connection's next CommandComplete; by then this promise has settled and ignores it.
 */
export class ClientCopy implements CopyWriter {
  constructor(private readonly sql: Sql) {}

  async copy(statement: string, data: string | Buffer, sendBy = NO_DEADLINE): Promise<void> {
    const connection = await takeBefore(this.sql.reserve(), sendBy, 'no connection was free for the COPY', (late) =>
      late.release(),
    );
    try {
      checkSendDeadline(sendBy, 'the COPY');
      await copyOn(connection as unknown as Sql, statement, data);
    } catch (error) {
      releaseReserved(connection, error);
      throw error;
    }
    // Only once settled: a COPY that never settles keeps its connection out of the pool.
    connection.release();
  }

  /**
   * The same as CopyPool's, in round trips of its own on a reserved connection: BEGIN, `fence`,
   * the COPY, COMMIT. After a failure on a live session a ROLLBACK is sent and the connection
   * released; a lost one is left to the client, which drops it (the fence, a transaction lock,
   * ends with the transaction either way).
   */
  async copyFenced(fence: string, statement: string, data: string | Buffer, sendBy = NO_DEADLINE): Promise<void> {
    const connection = await takeBefore(this.sql.reserve(), sendBy, 'no connection was free for the COPY', (late) =>
      late.release(),
    );
    // What the session's health is judged by: nothing, or the error that a ROLLBACK did not clear.
    let failure: unknown;
    try {
      try {
        await connection.unsafe('begin');
      } catch (error) {
        failure = error;
        throw error;
      }
      try {
        await connection.unsafe(fence);
        // Its own round trips came first: the rows go only if there is still time (then ROLLBACK).
        checkSendDeadline(sendBy, 'the COPY');
        await copyOn(connection as unknown as Sql, statement, data);
        const result = await connection.unsafe('commit');
        if ((result as unknown as { command: string }).command !== 'COMMIT')
          throw new Error('the COPY transaction did not commit');
      } catch (error) {
        // Only on a live session: a query handed to a lost connection is written to its null
        // socket from a timer, an uncaught TypeError (porsager/postgres#1154).
        if (sessionAlive(error))
          await connection.unsafe('rollback').catch((rollbackFailed: unknown) => {
            failure = rollbackFailed;
          });
        else failure = error;
        throw error;
      }
    } finally {
      releaseReserved(connection, failure);
    }
  }

  /** The pool belongs to the caller, who ends it. */
  close(): void {}
}

/**
 * Gives a reserved connection back to the pool, unless `failure` says it is gone. The client
 * (3.4.9) has already put a lost connection on its closed list by the time its query fails;
 * release() would move it back among the open ones, and the next query handed to it is written to
 * a null socket (an uncaught TypeError from a timer) and never settles.
 */
export function releaseReserved(connection: { release(): void }, failure?: unknown): void {
  if (failure === undefined || sessionAlive(failure)) connection.release();
}

/**
 * After `error`, the session is still there: anything but the client's connection errors
 * (CONNECTION_CLOSED, _DESTROYED, _ENDED…), a socket's (ECONNRESET…) and a server's FATAL or PANIC.
 */
function sessionAlive(error: unknown): boolean {
  const { code, severity } = error as { code?: unknown; severity?: unknown };
  if (severity === 'FATAL' || severity === 'PANIC') return false;
  return !(typeof code === 'string' && (code.startsWith('CONNECTION_') || /^E[A-Z]+$/.test(code)));
}

function copyOn(connection: Sql, statement: string, data: string | Buffer): Promise<void> {
  const query = connection.unsafe(statement) as unknown as ClientQuery;
  return new Promise<void>((resolve, reject) => {
    const clientReject = query.reject;
    if (typeof clientReject === 'function') {
      query.reject = (error: Error) => {
        clientReject.call(query, error);
        reject(error);
      };
    }
    query.writable().then((writable) => {
      writable.once('error', reject);
      writable.once('finish', () => resolve());
      writable.end(data);
    }, reject);
  });
}
