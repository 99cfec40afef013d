import type net from 'node:net';
import { Duplex } from 'node:stream';
import postgres from 'postgres';
import { parseDatabaseUrl, type DatabaseTarget } from './database-url.js';
import { TIMESTAMPTZ_TYPE } from './timestamps.js';
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
  /** The database is a Citus coordinator: the session gets CITUS_SESSION_PARAMETERS. */
  onCitus?: boolean;
}

/**
 * Session settings for every connection to a Citus coordinator (this pool and the COPY pool):
 * - plan every statement with its values: the coordinator cannot route a generic plan of a query
 *   with a subquery to its shard ("could not create distributed plan");
 * - ship a write that touches many shards (a flush of many orgs) over one connection per worker,
 *   not one per shard: each connection is a worker transaction that two-phase commit prepares
 *   and commits, with a WAL flush each. Measured: 15 times the single events of 16 orgs
 *   (docs/SCALING.md).
 */
export const CITUS_SESSION_PARAMETERS: Readonly<Record<string, string>> = {
  plan_cache_mode: 'force_custom_plan',
  'citus.multi_shard_modify_mode': 'sequential',
};

/**
 * Opens a `postgres` pool on the URL as database-url.ts reads it, the same reading the COPY
 * connections use (wire.ts). The client never sees the URL: it gets explicit options, its own
 * `ssl` off, and every socket from transport.ts (TCP_NODELAY, TLS per sslmode, verified there).
 *
 * The client is patched (patches/README.md): as released, a backend lost under a transaction, a
 * reserved connection or a connection's startup ended the process (test/db-faults.test.ts).
 */
export function openDatabase(databaseUrl: string, options: OpenOptions, env: NodeJS.ProcessEnv = process.env): Sql {
  const target = parseDatabaseUrl(databaseUrl, env);
  const connection: Record<string, string | number> = {
    application_name: target.applicationName ?? options.name,
    client_encoding: 'UTF8',
  };
  if (options.statementTimeoutMs) connection.statement_timeout = options.statementTimeoutMs;
  if (options.onCitus) Object.assign(connection, CITUS_SESSION_PARAMETERS);
  return postgres({
    host: target.host,
    port: target.port,
    user: target.user,
    password: target.password,
    database: target.database,
    max: options.max,
    connection,
    // Given, so the client takes neither from PG* variables (it reads PGSSL and PGSSLNEGOTIATION):
    // TLS is transport.ts's job. (PGTARGETSESSIONATTRS, which it also reads, is refused at start.)
    ssl: false,
    sslnegotiation: null,
    onnotice: () => {},
    idle_timeout: 0,
    connect_timeout: Math.ceil(target.connectTimeoutMs / 1000),
    // The client's default backoff grows to 10-20 s after a few failed connects, and a query handed
    // to a closed connection waits out that delay: with Postgres down, requests hung for 20 s instead
    // of getting a prompt 503, and recovery lagged as long. Retry within a second at most
    // (test/postgres-outage.test.ts). Seconds, by retry count shared across the pool.
    backoff: (retries: number) => Math.min(0.1 * retries, 1),
    transform: { undefined: null },
    types: { timestamptz: TIMESTAMPTZ_TYPE },
    // `socket` and `sslnegotiation` are supported by the client but missing from its type
    // definitions; `types` would change Sql's type parameter, and only replaces a parser.
    socket: () => openTransport(target).then(guardScram, failedSocket),
  } as unknown as postgres.Options<Record<string, never>>) as unknown as Sql;
}

/**
 * The `postgres` client (3.4.x) checks a SASLFinal's server signature when one arrives, but takes
 * an AuthenticationOk that comes after SCRAM began and without any SASLFinal: a server (or anyone
 * in the path, without TLS verification) that does not know the password could accept the login
 * and receive our queries. Until the session is ready, each chunk passes through here before any
 * listener sees it: such an AuthenticationOk drops the connection unseen by the client. After a
 * SASLFinal the rest of the chunk is handed on separately, so once the client has refused a wrong
 * signature (SASL_SIGNATURE_MISMATCH, socket destroyed) it reads nothing more from that server.
 */
function guardScram(socket: net.Socket): net.Socket {
  let pending: Buffer | null = null;
  let scramStarted = false;
  let serverFinalSeen = false;
  let watching = true;
  // The parts of `chunk` to hand to the client, in order; none if the connection is dropped.
  const split = (chunk: Buffer): Buffer[] => {
    const pendingLength = pending?.length ?? 0;
    let data: Buffer = pending ? Buffer.concat([pending, chunk]) : chunk;
    let offset = 0;
    while (data.length - offset >= 5) {
      const length = data.readInt32BE(offset + 1);
      if (data.length - offset < 1 + length) break;
      const type = data[offset];
      const end = offset + 1 + length;
      if (type === 0x52 && length >= 8) {
        // Authentication*
        const code = data.readInt32BE(offset + 5);
        if (code === 10) scramStarted = true;
        else if (code === 0 && scramStarted && !serverFinalSeen) {
          watching = false;
          socket.destroy(
            new Error(
              'SCRAM: the server accepted the login without proving it knows the password (no SASLFinal); connection refused',
            ),
          );
          return [];
        } else if (code === 12) {
          serverFinalSeen = true;
          const cut = end - pendingLength;
          pending = null;
          watching = false; // the client checks the signature; what follows is its to read, or not
          return cut < chunk.length ? [chunk.subarray(0, cut), chunk.subarray(cut)] : [chunk];
        }
      } else if (type === 0x5a || type === 0x45) {
        // ReadyForQuery, ErrorResponse: startup is over
        watching = false;
        pending = null;
        return [chunk];
      }
      offset = end;
    }
    data = data.subarray(offset);
    pending = data.length > 0 ? Buffer.from(data) : null;
    return [chunk];
  };
  const emit = socket.emit;
  // An own `emit` for the startup only (then back to the prototype's), so the check runs before
  // any listener and can withhold a chunk.
  socket.emit = function (this: net.Socket, event: string | symbol, ...args: unknown[]): boolean {
    if (event !== 'data' || !watching) return Reflect.apply(emit, this, [event, ...args]) as boolean;
    const parts = split(args[0] as Buffer);
    if (!watching) delete (socket as { emit?: unknown }).emit;
    for (const part of parts) {
      if (socket.destroyed) return false;
      Reflect.apply(emit, this, ['data', part]);
    }
    return parts.length > 0;
  } as typeof socket.emit;
  return socket;
}

/**
 * The client recovers from a failed connect only when it arrives as the socket's 'error' and
 * 'close' events: a rejected `socket` promise leaves that connection "connecting" for good, and
 * once every connection of the pool is stuck so, queries wait forever (seen: with Postgres down,
 * the third query on a pool of two hung). So a failed connect is handed over as a socket that
 * fails with the connect's error at the client's first write (its startup message), after which
 * the client has no bytes left pending for its next connection.
 */
function failedSocket(error: Error): net.Socket {
  let failed = false;
  const socket = new Duplex({
    read() {},
    write(_chunk, _encoding, callback) {
      callback();
      if (failed) return;
      failed = true;
      process.nextTick(() => {
        socket.emit('error', error);
        socket.emit('close', true); // hadError: the client counts it towards its backoff
      });
    },
    emitClose: false,
    autoDestroy: false,
  });
  return Object.assign(socket, { setKeepAlive: () => socket }) as unknown as net.Socket;
}

/** A URL for the embedded Postgres listening on a Unix socket in `socketDir`. */
export function socketUrl(socketDir: string, database: string, port = 5432): string {
  return `postgres://postgres@localhost:${port}/${database}?host=${encodeURIComponent(socketDir)}`;
}
