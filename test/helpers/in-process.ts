import { createHttpApp, type HttpApp } from '../../src/cluster/http-app.js';
import { loadConfig } from '../../src/config.js';
import { openDatabase } from '../../src/db/connect.js';
import { ensurePartitions, migrate } from '../../src/db/migrate.js';
import { loadUws } from '../../src/http/uws.js';
import { configureLog } from '../../src/log.js';
import { configureSecrets } from '../../src/secrets/sealed.js';
import { ADMIN_TOKEN } from './server.js';

/**
 * The HTTP app in the test's own process, listening on a free port, over a real Postgres: the
 * same routes, auth, batcher and COPY path as a worker, without the cluster around it. For tests
 * of what one request gets back (validation, auth, the contract); whatever needs processes
 * (durability, signals, several workers or nodes, delivery) boots the real server (server.ts).
 */
export class InProcessServer {
  private constructor(
    private readonly http: HttpApp,
    private readonly listenSocket: unknown,
    readonly port: number,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Migrates `databaseUrl` as the primary would, then serves it. `env` as for the server. */
  static async start(options: { databaseUrl: string; env?: Record<string, string> }): Promise<InProcessServer> {
    const config = loadConfig({ HOST: '127.0.0.1', PORT: '0', ADMIN_TOKEN, LOG_LEVEL: 'warn', ...options.env });
    configureLog(config.logLevel, 'in-process');
    configureSecrets(config.secretsKeys);
    const sql = openDatabase(options.databaseUrl, { max: 1, name: 'triggers-test-migrate' });
    try {
      await migrate(sql);
      await ensurePartitions(sql);
    } finally {
      await sql.end({ timeout: 1 });
    }
    const uws = loadUws();
    const http = await createHttpApp(uws, config, options.databaseUrl, Date.now());
    const listenSocket = await new Promise<unknown>((resolve, reject) => {
      http.app.listen(config.host, 0, (token) =>
        token ? resolve(token) : reject(new Error('cannot listen on a free port')),
      );
    });
    return new InProcessServer(http, listenSocket, uws.us_socket_local_port(listenSocket as never));
  }

  async stop(): Promise<void> {
    const drained = this.http.drain(2_000);
    loadUws().us_listen_socket_close(this.listenSocket as never);
    await drained;
    await this.http.close();
    // This uWS build cannot close its side of keep-alive connections (no app.close()), and one
    // left open keeps the test process alive until fetch's idle timeout: close fetch's instead.
    const fetchDispatcher = (
      globalThis as Record<symbol, { close?(): Promise<void>; closed?: boolean; destroyed?: boolean } | undefined>
    )[Symbol.for('undici.globalDispatcher.1')];
    // Closed already when a file stops several servers (test/ingest.test.ts).
    if (!fetchDispatcher?.closed && !fetchDispatcher?.destroyed) await fetchDispatcher?.close?.();
  }
}
