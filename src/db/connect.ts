import net from 'node:net';
import postgres from 'postgres';

export type Sql = postgres.Sql<Record<string, never>>;
/** What a query helper needs: a pool or a transaction. */
export type Queryable = postgres.TransactionSql<Record<string, never>> | Sql;

export interface OpenOptions {
  /** Pool size. */
  max: number;
  /** Shown in pg_stat_activity. */
  name: string;
  /** Server-side bound on each statement (Postgres cancels it and the transaction rolls back). */
  statementTimeoutMs?: number;
}

/**
 * Opens a `postgres` pool. Two things the client does not do on its own:
 * - TCP sockets get TCP_NODELAY. Measured here without it: every COPY stalls ~88 ms and small
 *   queries up to 43 ms (Nagle + delayed ACK).
 * - `?host=/path/to/dir` in the URL selects a Unix socket (how the embedded Postgres is reached).
 */
export function openDatabase(databaseUrl: string, options: OpenOptions): Sql {
  const url = new URL(databaseUrl);
  const socketDir = url.searchParams.get('host');
  const common = {
    max: options.max,
    connection: options.statementTimeoutMs
      ? { application_name: options.name, statement_timeout: options.statementTimeoutMs }
      : { application_name: options.name },
    onnotice: () => {},
    idle_timeout: 0,
    connect_timeout: 10,
    // The client's default backoff grows to 10-20 s after a few failed connects, and a query handed
    // to a closed connection waits out that delay: with Postgres down, requests hung for 20 s instead
    // of getting a prompt 503, and recovery lagged as long. Retry within a second at most
    // (test/postgres-outage.test.ts). Seconds, by retry count shared across the pool.
    backoff: (retries: number) => Math.min(0.1 * retries, 1),
    transform: { undefined: null },
  } as const;
  if (socketDir && socketDir.startsWith('/')) {
    return postgres({
      ...common,
      host: socketDir,
      port: Number(url.port || 5432),
      user: decodeURIComponent(url.username) || 'postgres',
      password: url.password ? decodeURIComponent(url.password) : undefined,
      database: decodeURIComponent(url.pathname.slice(1)) || 'postgres',
    }) as unknown as Sql;
  }
  // `socket` is supported by the client but missing from its type definitions.
  return postgres(databaseUrl, { ...common, socket: connectNoDelay } as postgres.Options<Record<string, never>>) as unknown as Sql;
}

function connectNoDelay(options: { host: string[]; port: number[] }): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: options.host[0], port: options.port[0], noDelay: true });
    const timer = setTimeout(() => socket.destroy(new Error('connect timeout')), 10_000);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', reject);
      resolve(socket);
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/** A URL for the embedded Postgres listening on a Unix socket in `socketDir`. */
export function socketUrl(socketDir: string, database: string, port = 5432): string {
  return `postgres://postgres@localhost:${port}/${database}?host=${encodeURIComponent(socketDir)}`;
}
