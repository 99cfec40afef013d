import crypto from 'node:crypto';
import type net from 'node:net';
import { parseDatabaseUrl, type DatabaseTarget } from './database-url.js';
import { openTransport } from './transport.js';

/**
 * A minimal PostgreSQL wire-protocol connection, for the one statement on the ingest hot path:
 * a `COPY … FROM STDIN` (after its flush's fence) whose messages and data go out in one socket
 * write (see copy-pool.ts for why and how). It knows startup, authentication (trust, password, MD5,
 * SCRAM-SHA-256), TLS, and one round trip at a time; everything else uses the `postgres` client.
 */

/** Where and how to connect (database-url.ts), plus run-time parameters sent at startup. */
export interface WireTarget extends DatabaseTarget {
  /** application_name (used unless the URL names one), statement_timeout, … */
  parameters: Record<string, string>;
}

/** The COPY connections' target: the same reading of the URL as the `postgres` client's (connect.ts). */
export function wireTarget(
  databaseUrl: string,
  parameters: Record<string, string>,
  env: NodeJS.ProcessEnv = process.env,
): WireTarget {
  return { ...parseDatabaseUrl(databaseUrl, env), parameters };
}

/** An ErrorResponse from the server, with its SQLSTATE. */
export class PostgresWireError extends Error {
  /**
   * The constraint the error names, if any (field 'n'), under the `postgres` client's name for it:
   * a CHECK violation names one, a row that no partition takes does not (src/ingest/refusal.ts).
   */
  readonly constraint_name: string | undefined;

  constructor(
    message: string,
    readonly code: string,
    readonly severity: string,
    constraintName?: string,
  ) {
    super(message);
    this.name = 'PostgresWireError';
    this.constraint_name = constraintName;
  }
}

export interface RoundTripResult {
  /** The last CommandComplete tag, e.g. "COPY 12". */
  command: string;
  /** Every CommandComplete tag of the round trip, in order. */
  commands: string[];
}

const PROTOCOL_3 = 196608;

export class WireConnection {
  private buffered: Buffer | null = null;
  private waiter: { resolve(result: RoundTripResult): void; reject(error: Error): void } | null = null;
  /** ReadyForQuery messages still to come before the round trip ends (one per simple Query sent). */
  private readyLeft = 0;
  private commands: string[] = [];
  private error: PostgresWireError | null = null;
  private closedWith: Error | null = null;
  /** Names of the statements prepared on this session (copy-pool.ts keeps it). */
  readonly prepared = new Set<string>();

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (error) => this.fail(error));
    socket.on('close', () => this.fail(new Error('connection to Postgres closed')));
  }

  /** Connects and authenticates; resolves once the server is ready for a query. */
  static async connect(target: WireTarget): Promise<WireConnection> {
    const socket = await openTransport(target);
    try {
      return new WireConnection(await authenticate(socket, target));
    } catch (error) {
      socket.destroy();
      throw error;
    }
  }

  get closed(): boolean {
    return this.closedWith !== null;
  }

  /**
   * Writes `frame` (complete frontend messages containing `queries` simple Queries) in one write
   * and resolves at the last ReadyForQuery, or rejects with the server's first error or the
   * connection's loss.
   */
  roundTrip(frame: Buffer, queries = 1): Promise<RoundTripResult> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    if (this.waiter) return Promise.reject(new Error('WireConnection: a round trip is already in flight'));
    this.commands = [];
    this.readyLeft = queries;
    this.error = null;
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
      this.socket.write(frame);
    });
  }

  close(): void {
    if (this.closedWith) return;
    this.closedWith = new Error('connection closed by the client');
    // Terminate ('X'), then close: the server ends the session without logging a lost client.
    this.socket.end(Buffer.from([0x58, 0, 0, 0, 4]));
    this.rejectWaiter(this.closedWith);
  }

  destroy(reason: Error): void {
    this.fail(reason);
    this.socket.destroy();
  }

  private fail(error: Error): void {
    if (!this.closedWith) this.closedWith = error;
    this.rejectWaiter(this.closedWith);
  }

  private rejectWaiter(error: Error): void {
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.reject(error);
  }

  private receive(chunk: Buffer): void {
    const data = this.buffered ? Buffer.concat([this.buffered, chunk]) : chunk;
    let offset = 0;
    while (data.length - offset >= 5) {
      const length = data.readInt32BE(offset + 1);
      if (data.length - offset < 1 + length) break;
      this.message(data[offset]!, data.subarray(offset + 5, offset + 1 + length));
      offset += 1 + length;
    }
    this.buffered = offset === data.length ? null : Buffer.from(data.subarray(offset));
  }

  private message(type: number, body: Buffer): void {
    switch (type) {
      case 0x43: // CommandComplete
        this.commands.push(body.toString('utf8', 0, body.length - 1));
        return;
      case 0x45: {
        // ErrorResponse
        const error = parseError(body);
        if (error.severity === 'FATAL' || error.severity === 'PANIC') {
          this.destroy(error); // the server closes the session after a FATAL
          return;
        }
        this.error ??= error;
        return;
      }
      case 0x5a: {
        // ReadyForQuery
        if (--this.readyLeft > 0) return;
        const waiter = this.waiter;
        this.waiter = null;
        if (!waiter) return;
        if (this.error) waiter.reject(this.error);
        else waiter.resolve({ command: this.commands[this.commands.length - 1] ?? '', commands: this.commands });
        return;
      }
      default:
        // CopyInResponse, NoticeResponse, ParameterStatus, NotificationResponse: nothing to do.
        return;
    }
  }
}

function parseError(body: Buffer): PostgresWireError {
  const fields: Record<string, string> = {};
  let offset = 0;
  while (offset < body.length && body[offset] !== 0) {
    const end = body.indexOf(0, offset + 1);
    fields[String.fromCharCode(body[offset]!)] = body.toString('utf8', offset + 1, end);
    offset = end + 1;
  }
  return new PostgresWireError(
    fields.M ?? 'unknown Postgres error',
    fields.C ?? '',
    fields.V ?? fields.S ?? 'ERROR',
    fields.n,
  );
}

/** Reads whole backend messages from a socket during startup. */
class StartupReader {
  private data = Buffer.alloc(0);
  private wake: (() => void) | null = null;
  private error: Error | null = null;

  constructor(private readonly socket: net.Socket) {
    socket.on('data', this.onData);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
  }

  private readonly onData = (chunk: Buffer) => {
    this.data = Buffer.concat([this.data, chunk]);
    this.wake?.();
  };

  private readonly onError = (error: Error) => {
    this.error = error;
    this.wake?.();
  };

  private readonly onClose = () => {
    this.error ??= new Error('Postgres closed the connection during startup');
    this.wake?.();
  };

  async byte(): Promise<number> {
    await this.until(1);
    const value = this.data[0]!;
    this.data = this.data.subarray(1);
    return value;
  }

  async message(): Promise<{ type: number; body: Buffer }> {
    await this.until(5);
    const length = this.data.readInt32BE(1);
    await this.until(1 + length);
    const message = { type: this.data[0]!, body: Buffer.from(this.data.subarray(5, 1 + length)) };
    this.data = this.data.subarray(1 + length);
    return message;
  }

  detach(): Buffer {
    this.socket.removeListener('data', this.onData);
    this.socket.removeListener('error', this.onError);
    this.socket.removeListener('close', this.onClose);
    return this.data;
  }

  private async until(bytes: number): Promise<void> {
    while (this.data.length < bytes) {
      if (this.error) throw this.error;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = null;
    }
  }
}

/**
 * Startup and authentication on an open socket (plain or TLS, see transport.ts). Once SCRAM has
 * begun, AuthenticationOk is accepted only after the server proved it knows the password (a
 * verified SASLFinal): otherwise anyone in the path could answer "OK" and receive our COPYs.
 */
async function authenticate(socket: net.Socket, target: WireTarget): Promise<net.Socket> {
  const reader = new StartupReader(socket);
  const timer = setTimeout(
    () => socket.destroy(new Error(`Postgres startup timed out after ${target.connectTimeoutMs} ms`)),
    target.connectTimeoutMs,
  );
  let leftover: Buffer;
  try {
    socket.write(startupMessage(target));
    let scram: Scram | null = null;
    for (;;) {
      const { type, body } = await reader.message();
      if (type === 0x45) throw parseError(body);
      if (type === 0x5a) break; // ReadyForQuery
      if (type !== 0x52) continue; // ParameterStatus, BackendKeyData, NoticeResponse, …
      const code = body.readInt32BE(0);
      if (code === 0) {
        // AuthenticationOk
        if (scram && !scram.verified)
          throw new Error(
            'SCRAM: the server accepted the login without proving it knows the password (no verified server signature); connection refused',
          );
        continue;
      }
      if (code === 3) socket.write(passwordMessage(Buffer.from(target.password + '\0')));
      else if (code === 5)
        socket.write(
          passwordMessage(Buffer.from(md5Password(target.user, target.password, body.subarray(4, 8)) + '\0')),
        );
      else if (code === 10 && !scram) {
        const mechanisms = body.toString('utf8', 4).split('\0');
        if (!mechanisms.includes('SCRAM-SHA-256'))
          throw new Error(
            `Postgres asks for SASL mechanisms ${mechanisms.join(', ')}; only SCRAM-SHA-256 is supported`,
          );
        scram = new Scram(target.password);
        socket.write(scram.initialResponse());
      } else if (code === 11 && scram) socket.write(scram.finalResponse(body.toString('utf8', 4)));
      else if (code === 12 && scram) scram.verifyServer(body.toString('utf8', 4));
      else throw new Error(`unsupported or out-of-order Postgres authentication message (code ${code})`);
    }
  } finally {
    clearTimeout(timer);
    leftover = reader.detach();
  }
  // Thrown, not destroy(error): nothing listens for the socket's errors until the connection is built.
  if (leftover.length > 0) throw new Error('unexpected data from Postgres after startup');
  return socket;
}

function startupMessage(target: WireTarget): Buffer {
  const parameters: Record<string, string> = { ...target.parameters, client_encoding: 'UTF8' };
  if (target.applicationName) parameters.application_name = target.applicationName;
  const pairs: string[] = ['user', target.user, 'database', target.database];
  for (const [name, value] of Object.entries(parameters)) pairs.push(name, value);
  const body = Buffer.from(pairs.join('\0') + '\0\0');
  const message = Buffer.alloc(8 + body.length);
  message.writeInt32BE(8 + body.length, 0);
  message.writeInt32BE(PROTOCOL_3, 4);
  body.copy(message, 8);
  return message;
}

function passwordMessage(payload: Buffer): Buffer {
  const message = Buffer.alloc(5 + payload.length);
  message[0] = 0x70; // 'p'
  message.writeInt32BE(4 + payload.length, 1);
  payload.copy(message, 5);
  return message;
}

function md5Password(user: string, password: string, salt: Buffer): string {
  const inner = crypto
    .createHash('md5')
    .update(password + user)
    .digest('hex');
  return (
    'md5' +
    crypto
      .createHash('md5')
      .update(Buffer.concat([Buffer.from(inner), salt]))
      .digest('hex')
  );
}

/** SCRAM-SHA-256 (RFC 5802/7677) as Postgres uses it: no channel binding, username from startup. */
class Scram {
  private readonly clientNonce = crypto.randomBytes(18).toString('base64');
  private readonly clientFirstBare = `n=*,r=${this.clientNonce}`;
  private expectedServerSignature = '';
  /** Set once the server's SASLFinal carried the signature only the password's holder can make. */
  verified = false;

  constructor(private readonly password: string) {}

  initialResponse(): Buffer {
    const mechanism = Buffer.from('SCRAM-SHA-256\0');
    const data = Buffer.from('n,,' + this.clientFirstBare);
    const length = Buffer.alloc(4);
    length.writeInt32BE(data.length, 0);
    return passwordMessage(Buffer.concat([mechanism, length, data]));
  }

  finalResponse(serverFirst: string): Buffer {
    if (this.expectedServerSignature) throw new Error('SCRAM: the server sent a second SASLContinue');
    const attributes = new Map(serverFirst.split(',').map((part) => [part[0]!, part.slice(2)]));
    const nonce = attributes.get('r') ?? '';
    if (!nonce.startsWith(this.clientNonce)) throw new Error('SCRAM: the server nonce does not extend ours');
    const iterations = Number(attributes.get('i'));
    if (!Number.isInteger(iterations) || iterations < 1 || iterations > 10_000_000)
      throw new Error('SCRAM: the server sent an invalid iteration count');
    const salted = crypto.pbkdf2Sync(
      this.password.normalize('NFKC'),
      Buffer.from(attributes.get('s') ?? '', 'base64'),
      iterations,
      32,
      'sha256',
    );
    const clientKey = hmac(salted, 'Client Key');
    const storedKey = crypto.createHash('sha256').update(clientKey).digest();
    const finalWithoutProof = `c=biws,r=${nonce}`;
    const authMessage = `${this.clientFirstBare},${serverFirst},${finalWithoutProof}`;
    const signature = hmac(storedKey, authMessage);
    const proof = Buffer.from(clientKey.map((byte, i) => byte ^ signature[i]!));
    this.expectedServerSignature = hmac(hmac(salted, 'Server Key'), authMessage).toString('base64');
    return passwordMessage(Buffer.from(`${finalWithoutProof},p=${proof.toString('base64')}`));
  }

  verifyServer(serverFinal: string): void {
    const signature = serverFinal
      .split(',')
      .find((part) => part.startsWith('v='))
      ?.slice(2);
    if (
      !this.expectedServerSignature ||
      signature === undefined ||
      !timingSafeEqualText(signature, this.expectedServerSignature)
    ) {
      throw new Error('SCRAM: the server signature does not match; connection refused');
    }
    this.verified = true;
  }
}

function timingSafeEqualText(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && crypto.timingSafeEqual(left, right);
}

function hmac(key: Buffer, data: string): Buffer {
  return crypto.createHmac('sha256', key).update(data).digest();
}
