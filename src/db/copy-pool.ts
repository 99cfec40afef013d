import { checkSendDeadline, NO_DEADLINE, SendDeadlineExceeded } from './send-deadline.js';
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
 * sent: when the promise resolves, the rows are durable. The firehose's fenced flush
 * (copyFenced) sends the same in the extended protocol, prepared, and ends at Sync the same way.
 */
export class CopyPool {
  private readonly idle: WireConnection[] = [];
  private readonly waiting: Array<() => void> = [];
  private opened = 0;
  private closed = false;
  private failures = 0;
  private lastFailureAt = 0;
  private lastFailure: Error | null = null;
  private readonly names = new Map<string, string>();

  /**
   * `deadAfterMs`: a connection that has not answered a COPY for this long is destroyed. Postgres
   * answers (or cancels at statement_timeout) well before; silence that long means a dead peer
   * or network, which TCP keepalive would only notice after many minutes.
   */
  constructor(
    private readonly target: WireTarget,
    private readonly size: number,
    private readonly deadAfterMs = 0,
  ) {}

  /**
   * Runs one COPY with `data` as its whole data; resolves with the row count after commit. Sends
   * nothing once `sendBy` has passed (send-deadline.ts): the connection is taken by then or not at all.
   */
  copy(statement: string, data: string | Buffer, sendBy = NO_DEADLINE): Promise<number> {
    const frame = copyFrame(statement, data);
    return this.withConnection(sendBy, async (connection) => {
      const { command } = await connection.roundTrip(frame);
      if (!command.startsWith('COPY ')) throw new Error(`the COPY ended with ${command || 'no command'}`);
      return Number(command.slice(5));
    });
  }

  /**
   * A fenced flush (src/ingest/sequence.ts): `fence`, then the COPY, as prepared statements of the
   * extended protocol in one write: Bind and Execute of each, the COPY data, CopyDone, Sync (and,
   * on a connection's first use of a statement, its Parse first). Both run in one implicit
   * transaction that commits at Sync, before ReadyForQuery: when the promise resolves, the rows
   * are durable. Prepared, neither statement is parsed or planned again per flush (the fence
   * costs what one more statement costs, docs/PERFORMANCE.md).
   *
   * After an error the server skips everything up to Sync: if the fence fails, the COPY never
   * starts, so no row is ever stored unfenced; the fence is a transaction lock and ends with the
   * transaction, so nothing is left to clean up. The connection is dropped after any failure
   * (which statements it kept prepared is unknown then).
   */
  copyFenced(fence: string, statement: string, data: string | Buffer, sendBy = NO_DEADLINE): Promise<number> {
    return this.withConnection(sendBy, async (connection) => {
      const fenceName = this.statementName(fence);
      const copyName = this.statementName(statement);
      const head: Buffer[] = [];
      if (!connection.prepared.has(fenceName)) head.push(parseMessage(fenceName, fence));
      if (!connection.prepared.has(copyName)) head.push(parseMessage(copyName, statement));
      head.push(bindExecute(fenceName), bindExecute(copyName));
      const frame = preparedCopyFrame(head, data);
      try {
        const { commands } = await connection.roundTrip(frame);
        const copied = commands[commands.length - 1] ?? '';
        if (commands.length !== 2 || !copied.startsWith('COPY '))
          throw new Error(`the fenced COPY ended with ${commands.join(', ') || 'no command'}`);
        connection.prepared.add(fenceName);
        connection.prepared.add(copyName);
        return Number(copied.slice(5));
      } catch (error) {
        connection.destroy(error as Error);
        throw error;
      }
    });
  }

  /** The name of `text` as a prepared statement: the same on every connection of the pool. */
  private statementName(text: string): string {
    let name = this.names.get(text);
    if (name === undefined) this.names.set(text, (name = 'triggers_' + this.names.size));
    return name;
  }

  /**
   * `work` on a pooled connection, which a watchdog drops if Postgres stays silent too long. A
   * connection taken (or opened) only after `sendBy` goes back unused: `work` sends at once.
   */
  private async withConnection<T>(sendBy: number, work: (connection: WireConnection) => Promise<T>): Promise<T> {
    const connection = await this.acquire(sendBy);
    try {
      checkSendDeadline(sendBy, 'the COPY');
    } catch (error) {
      this.release(connection);
      throw error;
    }
    const watchdog =
      this.deadAfterMs > 0
        ? setTimeout(
            () =>
              connection.destroy(
                new Error(`no answer from Postgres within ${this.deadAfterMs} ms; connection dropped`),
              ),
            this.deadAfterMs,
          )
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

  private async acquire(sendBy: number): Promise<WireConnection> {
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
      await this.released(sendBy);
    }
  }

  /** Resolves at the next release, or rejects at `sendBy` (and stops waiting for it). */
  private released(sendBy: number): Promise<void> {
    if (sendBy === NO_DEADLINE) return new Promise<void>((resolve) => this.waiting.push(resolve));
    return new Promise<void>((resolve, reject) => {
      const wake = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(
        () => {
          const at = this.waiting.indexOf(wake);
          if (at !== -1) this.waiting.splice(at, 1);
          reject(new SendDeadlineExceeded('no COPY connection was free'));
        },
        Math.max(0, sendBy - performance.now()),
      );
      this.waiting.push(wake);
    });
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
  const frame = Buffer.allocUnsafe(5 + queryLength + copyDataDoneLength(data));
  frame[0] = 0x51; // Query
  frame.writeInt32BE(4 + queryLength, 1);
  const end = 5 + frame.write(statement, 5);
  frame[end] = 0;
  writeCopyDataDone(frame, end + 1, data);
  return frame;
}

/** Parse: `text` as the prepared statement `name`, without parameters. */
function parseMessage(name: string, text: string): Buffer {
  const length = 4 + Buffer.byteLength(name) + 1 + Buffer.byteLength(text) + 1 + 2;
  const message = Buffer.allocUnsafe(1 + length);
  message[0] = 0x50; // Parse
  message.writeInt32BE(length, 1);
  let offset = 5;
  offset += message.write(name, offset);
  message[offset++] = 0;
  offset += message.write(text, offset);
  message[offset++] = 0;
  message.writeInt16BE(0, offset); // no parameter types
  return message;
}

const boundExecutes = new Map<string, Buffer>();

/** Bind (the unnamed portal to statement `name`, no parameters, text results) and Execute it. */
function bindExecute(name: string): Buffer {
  let messages = boundExecutes.get(name);
  if (messages) return messages;
  const bindLength = 4 + 1 + Buffer.byteLength(name) + 1 + 2 + 2 + 2;
  messages = Buffer.alloc(1 + bindLength + 1 + 4 + 1 + 4);
  messages[0] = 0x42; // Bind
  messages.writeInt32BE(bindLength, 1);
  messages.write(name, 6); // after the unnamed portal's terminator at 5; the rest is zeros
  const execute = 1 + bindLength;
  messages[execute] = 0x45; // Execute: the unnamed portal, every row
  messages.writeInt32BE(4 + 1 + 4, execute + 1);
  boundExecutes.set(name, messages);
  return messages;
}

const SYNC = Buffer.from([0x53, 0, 0, 0, 4]);

/** `head` (whole messages), CopyData (all of `data`), CopyDone and Sync, as one buffer. */
function preparedCopyFrame(head: readonly Buffer[], data: string | Buffer): Buffer {
  let headLength = 0;
  for (const message of head) headLength += message.length;
  const copyLength = copyDataDoneLength(data);
  const frame = Buffer.allocUnsafe(headLength + copyLength + SYNC.length);
  let offset = 0;
  for (const message of head) offset += message.copy(frame, offset);
  writeCopyDataDone(frame.subarray(0, offset + copyLength), offset, data);
  SYNC.copy(frame, offset + copyLength);
  return frame;
}

function copyDataDoneLength(data: string | Buffer): number {
  return 5 + (typeof data === 'string' ? Buffer.byteLength(data) : data.length) + 5;
}

function writeCopyDataDone(frame: Buffer, at: number, data: string | Buffer): void {
  const dataLength = frame.length - at - 10;
  frame[at] = 0x64; // CopyData
  frame.writeInt32BE(4 + dataLength, at + 1);
  if (typeof data === 'string') frame.write(data, at + 5);
  else data.copy(frame, at + 5);
  frame[at + 5 + dataLength] = 0x63; // CopyDone
  frame.writeInt32BE(4, at + 6 + dataLength);
}
