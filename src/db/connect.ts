import type net from 'node:net';
import postgres from 'postgres';
import { parseDatabaseUrl, type DatabaseTarget } from './database-url.js';
import { openTransport } from './transport.js';

export type Sql = postgres.Sql<Record<string, never>>;
/** What a query helper needs: a pool or a transaction. */
export type Queryable = postgres.TransactionSql<Record<string, never>> | Sql;

export interface OpenOptions {
  /** Pool size. */
  max: number;
  /** Shown in pg_stat_activity, unless the URL sets application_name. */
  name: string;
  /** Server-side bound on each statement (Postgres cancels it and the transaction rolls back). */
  statementTimeoutMs?: number;
}

/**
 * Opens a `postgres` pool on the URL as database-url.ts reads it, the same reading the COPY
 * connections use (wire.ts). The client never sees the URL: it gets explicit options, its own
 * `ssl` off, and every socket from transport.ts (TCP_NODELAY, TLS per sslmode, verified there).
 */
export function openDatabase(databaseUrl: string, options: OpenOptions, env: NodeJS.ProcessEnv = process.env): Sql {
  const target = parseDatabaseUrl(databaseUrl, env);
  const connection: Record<string, string | number> = {
    application_name: target.applicationName ?? options.name,
    client_encoding: 'UTF8',
  };
  if (options.statementTimeoutMs) connection.statement_timeout = options.statementTimeoutMs;
  return postgres({
    host: target.host,
    port: target.port,
    user: target.user,
    password: target.password,
    database: target.database,
    max: options.max,
    connection,
    // Options the client would otherwise take from PG* variables; TLS is transport.ts's job.
    ssl: false,
    sslnegotiation: null,
    target_session_attrs: undefined,
    onnotice: () => {},
    idle_timeout: 0,
    connect_timeout: Math.ceil(target.connectTimeoutMs / 1000),
    // The client's default backoff grows to 10-20 s after a few failed connects, and a query handed
    // to a closed connection waits out that delay: with Postgres down, requests hung for 20 s instead
    // of getting a prompt 503, and recovery lagged as long. Retry within a second at most
    // (test/postgres-outage.test.ts). Seconds, by retry count shared across the pool.
    backoff: (retries: number) => Math.min(0.1 * retries, 1),
    transform: { undefined: null },
    // `socket` and `sslnegotiation` are supported by the client but missing from its type definitions.
    socket: async () => guardScram(await openTransport(target)),
  } as postgres.Options<Record<string, never>>) as unknown as Sql;
}

/**
 * The `postgres` client (3.4.x) checks a SASLFinal's server signature when one arrives, but takes
 * an AuthenticationOk that comes after SCRAM began and without any SASLFinal: a server (or anyone
 * in the path, without TLS verification) that does not know the password could accept the login
 * and receive our queries. Until the session is ready, we look at each chunk before the client
 * does, and drop the connection, unseen by the client, at such an AuthenticationOk. The client
 * itself refuses a wrong signature (SASL_SIGNATURE_MISMATCH).
 */
function guardScram(socket: net.Socket): net.Socket {
  let pending: Buffer | null = null;
  let scramStarted = false;
  let serverFinalSeen = false;
  const stopWatching = () => {
    delete (socket as { emit?: unknown }).emit; // back to the prototype's
  };
  // Returns false when the chunk must not reach the client.
  const inspect = (chunk: Buffer): boolean => {
    let data: Buffer = pending ? Buffer.concat([pending, chunk]) : chunk;
    while (data.length >= 5) {
      const length = data.readInt32BE(1);
      if (data.length < 1 + length) break;
      const type = data[0];
      if (type === 0x52 && length >= 8) { // Authentication*
        const code = data.readInt32BE(5);
        if (code === 10) scramStarted = true;
        else if (code === 12) serverFinalSeen = true;
        else if (code === 0 && scramStarted && !serverFinalSeen) {
          stopWatching();
          socket.destroy(new Error('SCRAM: the server accepted the login without proving it knows the password (no SASLFinal); connection refused'));
          return false;
        }
      } else if (type === 0x5a || type === 0x45) { // ReadyForQuery, ErrorResponse: startup is over
        stopWatching();
        return true;
      }
      data = data.subarray(1 + length);
    }
    pending = data.length > 0 ? Buffer.from(data) : null;
    return true;
  };
  const emit = socket.emit;
  // An own `emit` for the startup only, so the check runs before any listener and can withhold a chunk.
  socket.emit = function (this: net.Socket, event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'data' && !inspect(args[0] as Buffer)) return false;
    return Reflect.apply(emit, this, [event, ...args]) as boolean;
  } as typeof socket.emit;
  return socket;
}

/** A URL for the embedded Postgres listening on a Unix socket in `socketDir`. */
export function socketUrl(socketDir: string, database: string, port = 5432): string {
  return `postgres://postgres@localhost:${port}/${database}?host=${encodeURIComponent(socketDir)}`;
}
