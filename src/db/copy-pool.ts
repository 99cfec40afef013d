import { WireConnection, type WireTarget } from './wire.js';

/**
 * `COPY … FROM STDIN` in one socket write per call, on a small pool of our own connections.
 *
 * Why not the `postgres` client: its COPY costs four socket writes (the query; then, after a round
 * trip, CopyData, CopyDone, and a CopyFail from the stream's auto-destroy), each waking the
 * backend. Measured: 25% of an HTTP worker's busy time under single-event load, and about twice
 * the client CPU per flush of this path.
 *
 * The protocol allows sending Query, CopyData and CopyDone together: the server reads the Query,
 * enters copy-in, and finds the data already waiting. If the statement fails before copy-in, the
 * server ignores CopyData/CopyDone outside a COPY, so every call still ends at exactly one
 * ReadyForQuery. With the simple protocol an autocommit COPY commits before CommandComplete is
 * sent: when the promise resolves, the rows are durable.
 */
export class CopyPool {
  private readonly idle: WireConnection[] = [];
  private readonly waiting: Array<() => void> = [];
  private opened = 0;
  private closed = false;
  private failures = 0;
  private lastFailureAt = 0;
  private lastFailure: Error | null = null;

  /**
   * `deadAfterMs`: a connection that has not answered a COPY for this long is destroyed. Postgres
   * answers (or cancels at statement_timeout) well before; silence that long means a dead peer
   * or network, which TCP keepalive would only notice after many minutes.
   */
  constructor(private readonly target: WireTarget, private readonly size: number, private readonly deadAfterMs = 0) {}

  /**
   * Runs one COPY with `data` as its whole data; resolves with the row count after commit.
   * `statement` may put other statements before the COPY: one Query, one implicit transaction.
   */
  copy(statement: string, data: string | Buffer): Promise<number> {
    const frame = copyFrame(statement, data);
    return this.withConnection(async (connection) => {
      const { command } = await connection.roundTrip(frame);
      if (!command.startsWith('COPY ')) throw new Error(`the COPY ended with ${command || 'no command'}`);
      return Number(command.slice(5));
    });
  }

  /**
   * A fenced flush (src/ingest/sequence.ts): `fence` and the COPY as two statements of one Query,
   * which Postgres runs as one implicit transaction, committed before the Query's CommandComplete
   * of the COPY is followed by ReadyForQuery. An error in `fence` skips the COPY (the server then
   * ignores the data), so no row is ever stored unfenced; the fence is a transaction lock, so it
   * ends with the transaction whatever happens, and nothing is left to clean up. Resolves with the
   * row count after the commit.
   */
  copyFenced(fence: string, statement: string, data: string | Buffer): Promise<number> {
    return this.copy(fence + ';' + statement, data);
  }

  /** `work` on a pooled connection, which a watchdog drops if Postgres stays silent too long. */
  private async withConnection<T>(work: (connection: WireConnection) => Promise<T>): Promise<T> {
    const connection = await this.acquire();
    const watchdog = this.deadAfterMs > 0
      ? setTimeout(() => connection.destroy(new Error(`no answer from Postgres within ${this.deadAfterMs} ms; connection dropped`)), this.deadAfterMs)
      : null;
    try {
      return await work(connection);
    } finally {
      if (watchdog) clearTimeout(watchdog);
      this.release(connection);
    }
  }

  close(): void {
    this.closed = true;
    for (const connection of this.idle.splice(0)) connection.close();
    for (const wake of this.waiting.splice(0)) wake();
  }

  private async acquire(): Promise<WireConnection> {
    for (;;) {
      if (this.closed) throw new Error('the COPY pool is closed');
      const connection = this.idle.pop();
      if (connection) {
        if (!connection.closed) return connection;
        this.opened--;
        continue;
      }
      if (this.opened < this.size) return this.connect();
      // Only after a flush timed out while its COPY is still in flight; it frees soon (statement_timeout).
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
  }

  private async connect(): Promise<WireConnection> {
    // With Postgres down, fail at once for a while after a failed attempt instead of making every
    // flush wait for its own connect timeout: requests get a prompt 503. Retry within a second at most.
    const backoffMs = Math.min(100 * this.failures, 1000);
    if (this.lastFailure && performance.now() - this.lastFailureAt < backoffMs) throw this.lastFailure;
    this.opened++;
    try {
      const connection = await WireConnection.connect(this.target);
      this.failures = 0;
      this.lastFailure = null;
      return connection;
    } catch (error) {
      this.opened--;
      this.failures++;
      this.lastFailureAt = performance.now();
      this.lastFailure = error as Error;
      throw error;
    }
  }

  private release(connection: WireConnection): void {
    if (connection.closed) this.opened--;
    else if (this.closed) {
      this.opened--;
      connection.close();
    } else this.idle.push(connection);
    this.waiting.shift()?.();
  }
}

/** Query + CopyData + CopyDone, as one buffer. */
function copyFrame(statement: string, data: string | Buffer): Buffer {
  const queryLength = Buffer.byteLength(statement) + 1;
  const dataLength = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
  const frame = Buffer.allocUnsafe(5 + queryLength + 5 + dataLength + 5);
  let offset = 0;
  frame[offset] = 0x51; // Query
  frame.writeInt32BE(4 + queryLength, offset + 1);
  offset += 5;
  offset += frame.write(statement, offset);
  frame[offset++] = 0;
  frame[offset] = 0x64; // CopyData
  frame.writeInt32BE(4 + dataLength, offset + 1);
  offset += 5;
  offset += typeof data === 'string' ? frame.write(data, offset) : data.copy(frame, offset);
  frame[offset] = 0x63; // CopyDone
  frame.writeInt32BE(4, offset + 1);
  return frame;
}
