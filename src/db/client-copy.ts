import type { Sql } from './connect.js';

/**
 * What the batcher's firehose flush needs: one autocommit `COPY … FROM STDIN` with `text` as its
 * whole data, resolved after the commit. Two implementations, chosen by INGEST_COPY_CLIENT:
 * CopyPool (copy-pool.ts, our own connections, one socket write per flush: the default) and
 * ClientCopy below (the `postgres` client, for diagnosis and as a fallback).
 */
export interface CopyWriter {
  copy(statement: string, text: string): Promise<unknown>;
  close(): void;
}

/** The internals of the client's Query object that the #1173 work-around below reaches. */
interface ClientQuery {
  reject?: (error: Error) => void;
  writable(): Promise<NodeJS.WritableStream & { once(event: string, listener: (...args: any[]) => void): unknown }>;
}

/**
 * COPY through the `postgres` client, outside any transaction: `sql.unsafe(copy).writable()` runs
 * as a simple-protocol statement on a pool connection, so it commits before CommandComplete, and
 * the writable's 'finish' (fired by CommandComplete) means the rows are durable.
 *
 * Never inside `sql.begin()`: porsager/postgres#1173 (3.4.9). When the server rejects the data
 * after CopyDone, the client never calls the writable's final callback, so 'finish' and 'error'
 * never come; in a transaction the ROLLBACK is never sent and the connection leaks. Autocommit
 * leaves no transaction open, but the stream would still hang until the flush timeout (a 503 after
 * FLUSH_TIMEOUT_MS for a failure Postgres reported at once). The client does hand the error to the
 * query's `reject`, which is a no-op by then (its promise already resolved with the stream): we
 * listen there too, so a refused COPY fails at once. If a client version renames that hook, the
 * batcher's flush timeout still bounds the wait (test/ingest.test.ts checks the prompt failure).
 */
export class ClientCopy implements CopyWriter {
  constructor(private readonly sql: Sql) {}

  copy(statement: string, text: string): Promise<void> {
    const query = this.sql.unsafe(statement) as unknown as ClientQuery;
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
        writable.end(text);
      }, reject);
    });
  }

  /** The pool belongs to the caller, who ends it. */
  close(): void {}
}
