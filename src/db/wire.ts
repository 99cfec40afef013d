import crypto from 'node:crypto';
import net from 'node:net';
import os from 'node:os';
import tls from 'node:tls';

/**
 * A minimal PostgreSQL wire-protocol connection, for the one statement on the ingest hot path:
 * a simple-protocol `COPY … FROM STDIN` whose Query, CopyData and CopyDone go out in one socket
 * write (see copy-pool.ts for why). It knows startup, authentication (trust, password, MD5,
 * SCRAM-SHA-256), TLS, and one round trip at a time; everything else uses the `postgres` client.
 */

export interface WireTarget {
  /** Unix socket path, or a TCP host and port. */
  path?: string;
  host?: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** false: plain; otherwise TLS with these options. `prefer` falls back to plain if refused. */
  ssl: false | { rejectUnauthorized: boolean; verifyHostname: boolean; servername?: string; optional: boolean };
  /** Run-time parameters sent at startup (application_name, statement_timeout, …). */
  parameters: Record<string, string>;
}

/** The same reading of a database URL as connect.ts and the `postgres` client make. */
export function wireTarget(databaseUrl: string, parameters: Record<string, string>): WireTarget {
  const url = new URL(databaseUrl);
  const socketDir = url.searchParams.get('host');
  const user = decodeURIComponent(url.username) || process.env.PGUSER || os.userInfo().username;
  const sslmode = url.searchParams.get('sslmode') ?? (url.searchParams.get('ssl') === 'true' ? 'require' : 'disable');
  const port = Number(url.port || 5432);
  const host = url.hostname.replace(/^\[|\]$/g, '') || 'localhost';
  return {
    ...(socketDir && socketDir.startsWith('/') ? { path: `${socketDir}/.s.PGSQL.${port}` } : { host }),
    port,
    user,
    password: url.password ? decodeURIComponent(url.password) : (process.env.PGPASSWORD ?? ''),
    database: decodeURIComponent(url.pathname.slice(1)) || process.env.PGDATABASE || user,
    ssl: sslmode === 'disable' || sslmode === 'allow'
      ? false
      : {
        rejectUnauthorized: sslmode === 'verify-ca' || sslmode === 'verify-full',
        verifyHostname: sslmode === 'verify-full',
        servername: net.isIP(host) ? undefined : host,
        optional: sslmode === 'prefer',
      },
    parameters,
  };
}

/** An ErrorResponse from the server, with its SQLSTATE. */
export class PostgresWireError extends Error {
  constructor(message: string, readonly code: string, readonly severity: string) {
    super(message);
    this.name = 'PostgresWireError';
  }
}

export interface RoundTripResult {
  /** The last CommandComplete tag, e.g. "COPY 12". */
  command: string;
}

const PROTOCOL_3 = 196608;
const SSL_REQUEST = 80877103;
const CONNECT_TIMEOUT_MS = 10_000;

export class WireConnection {
  private buffered: Buffer | null = null;
  private waiter: { resolve(result: RoundTripResult): void; reject(error: Error): void } | null = null;
  private command = '';
  private error: PostgresWireError | null = null;
  private closedWith: Error | null = null;

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (error) => this.fail(error));
    socket.on('close', () => this.fail(new Error('connection to Postgres closed')));
  }

  /** Connects and authenticates; resolves once the server is ready for a query. */
  static async connect(target: WireTarget): Promise<WireConnection> {
    const plain = await openSocket(target);
    try {
      return new WireConnection(await authenticate(plain, target));
    } catch (error) {
      plain.destroy();
      throw error;
    }
  }

  get closed(): boolean {
    return this.closedWith !== null;
  }

  /**
   * Writes `frame` (complete frontend messages containing exactly one simple Query) in one write
   * and resolves at ReadyForQuery, or rejects with the server's error or the connection's loss.
   */
  roundTrip(frame: Buffer): Promise<RoundTripResult> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    if (this.waiter) return Promise.reject(new Error('WireConnection: a round trip is already in flight'));
    this.command = '';
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
        this.command = body.toString('utf8', 0, body.length - 1);
        return;
      case 0x45: { // ErrorResponse
        const error = parseError(body);
        if (error.severity === 'FATAL' || error.severity === 'PANIC') {
          this.destroy(error); // the server closes the session after a FATAL
          return;
        }
        this.error = error;
        return;
      }
      case 0x5a: { // ReadyForQuery
        const waiter = this.waiter;
        this.waiter = null;
        if (!waiter) return;
        if (this.error) waiter.reject(this.error);
        else waiter.resolve({ command: this.command });
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
  return new PostgresWireError(fields.M ?? 'unknown Postgres error', fields.C ?? '', fields.V ?? fields.S ?? 'ERROR');
}

function openSocket(target: WireTarget): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = target.path ? net.connect({ path: target.path }) : net.connect({ host: target.host!, port: target.port, noDelay: true });
    const timer = setTimeout(() => socket.destroy(new Error(`connect to Postgres timed out after ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', reject);
      if (!target.path) socket.setKeepAlive(true, 60_000);
      resolve(socket);
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
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
      await new Promise<void>((resolve) => { this.wake = resolve; });
      this.wake = null;
    }
  }
}

/** Startup and authentication; returns the socket to talk on (the TLS one when TLS is used). */
async function authenticate(plain: net.Socket, target: WireTarget): Promise<net.Socket> {
  const socket = target.ssl ? await startTls(plain, target.ssl) : plain;
  const reader = new StartupReader(socket);
  const timer = setTimeout(() => socket.destroy(new Error('Postgres startup timed out')), CONNECT_TIMEOUT_MS);
  try {
    socket.write(startupMessage(target));
    let scram: Scram | null = null;
    for (;;) {
      const { type, body } = await reader.message();
      if (type === 0x45) throw parseError(body);
      if (type === 0x5a) break; // ReadyForQuery
      if (type !== 0x52) continue; // ParameterStatus, BackendKeyData, NoticeResponse, …
      const code = body.readInt32BE(0);
      if (code === 0) continue; // AuthenticationOk
      if (code === 3) socket.write(passwordMessage(Buffer.from(target.password + '\0')));
      else if (code === 5) socket.write(passwordMessage(Buffer.from(md5Password(target.user, target.password, body.subarray(4, 8)) + '\0')));
      else if (code === 10) {
        const mechanisms = body.toString('utf8', 4).split('\0');
        if (!mechanisms.includes('SCRAM-SHA-256')) throw new Error(`Postgres asks for SASL mechanisms ${mechanisms.join(', ')}; only SCRAM-SHA-256 is supported`);
        scram = new Scram(target.password);
        socket.write(scram.initialResponse());
      } else if (code === 11 && scram) socket.write(scram.finalResponse(body.toString('utf8', 4)));
      else if (code === 12 && scram) scram.verifyServer(body.toString('utf8', 4));
      else throw new Error(`unsupported Postgres authentication method (code ${code})`);
    }
  } finally {
    clearTimeout(timer);
    const leftover = reader.detach();
    if (leftover.length > 0) socket.destroy(new Error('unexpected data from Postgres after startup'));
  }
  return socket;
}

async function startTls(socket: net.Socket, ssl: Exclude<WireTarget['ssl'], false>): Promise<net.Socket> {
  const request = Buffer.alloc(8);
  request.writeInt32BE(8, 0);
  request.writeInt32BE(SSL_REQUEST, 4);
  const reader = new StartupReader(socket);
  socket.write(request);
  const answer = await reader.byte();
  reader.detach();
  if (answer !== 0x53) {
    if (ssl.optional) return socket;
    throw new Error('Postgres refused TLS (sslmode requires it)');
  }
  return new Promise((resolve, reject) => {
    const secure = tls.connect({
      socket,
      rejectUnauthorized: ssl.rejectUnauthorized,
      servername: ssl.servername,
      // verify-ca checks the chain only; verify-full also the host name (libpq's meaning).
      ...(ssl.verifyHostname ? {} : { checkServerIdentity: () => undefined }),
    });
    secure.once('secureConnect', () => {
      secure.removeListener('error', reject);
      resolve(secure);
    });
    secure.once('error', reject);
  });
}

function startupMessage(target: WireTarget): Buffer {
  const pairs: string[] = ['user', target.user, 'database', target.database];
  for (const [name, value] of Object.entries(target.parameters)) pairs.push(name, value);
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
  const inner = crypto.createHash('md5').update(password + user).digest('hex');
  return 'md5' + crypto.createHash('md5').update(Buffer.concat([Buffer.from(inner), salt])).digest('hex');
}

/** SCRAM-SHA-256 (RFC 5802/7677) as Postgres uses it: no channel binding, username from startup. */
class Scram {
  private readonly clientNonce = crypto.randomBytes(18).toString('base64');
  private readonly clientFirstBare = `n=*,r=${this.clientNonce}`;
  private expectedServerSignature = '';

  constructor(private readonly password: string) {}

  initialResponse(): Buffer {
    const mechanism = Buffer.from('SCRAM-SHA-256\0');
    const data = Buffer.from('n,,' + this.clientFirstBare);
    const length = Buffer.alloc(4);
    length.writeInt32BE(data.length, 0);
    return passwordMessage(Buffer.concat([mechanism, length, data]));
  }

  finalResponse(serverFirst: string): Buffer {
    const attributes = new Map(serverFirst.split(',').map((part) => [part[0]!, part.slice(2)]));
    const nonce = attributes.get('r') ?? '';
    if (!nonce.startsWith(this.clientNonce)) throw new Error('SCRAM: the server nonce does not extend ours');
    const salted = crypto.pbkdf2Sync(this.password.normalize('NFKC'), Buffer.from(attributes.get('s') ?? '', 'base64'), Number(attributes.get('i')), 32, 'sha256');
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
    if (serverFinal.split(',').find((part) => part.startsWith('v='))?.slice(2) !== this.expectedServerSignature) {
      throw new Error('SCRAM: the server signature does not match');
    }
  }
}

function hmac(key: Buffer, data: string): Buffer {
  return crypto.createHmac('sha256', key).update(data).digest();
}
