import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/main.js');
export const ADMIN_TOKEN = 'test-admin-token-0123456789';

/**
 * `npm test` starts its runner with `--no-opt` (package.json), which Node passes to each test
 * file's process; the servers the files start get it too. Their processes live seconds: V8's
 * optimising compiler spent more CPU on them than it saved, and the suite is CPU-bound (node
 * processes 10-15% less CPU, docs/PERFORMANCE.md "Test suite time"). Nothing here runs long enough
 * for unoptimised code to matter; the extended set and the benchmarks run without it.
 */
export const TEST_NODE_FLAGS = process.execArgv.filter((flag) => flag === '--no-opt');

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface ServerOptions {
  /** Omit to use the embedded Postgres under `dataDir`. */
  databaseUrl?: string;
  dataDir?: string;
  workers?: number;
  port?: number;
  env?: Record<string, string>;
  /** The node binary that runs the server; this test process's own when omitted. */
  node?: string;
  /** Another build's `dist/src/main.js` (a copy of this checkout elsewhere), run from `cwd`. */
  main?: string;
  cwd?: string;
}

/**
 * The real server (`node dist/src/main.js`: primary + workers) on a free port, as a user runs it.
 * `output` collects stdout and stderr for assertions and for failure messages.
 */
export class TestServer {
  output = '';
  private exitPromise: Promise<number | null>;

  private constructor(
    readonly proc: ChildProcess,
    readonly port: number,
  ) {
    this.exitPromise = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  static async start(options: ServerOptions): Promise<TestServer> {
    // freePort() closes its socket before the server binds: with many files at once, another
    // process (a receiver, a Postgres, another server) can take the port in between (seen once in
    // CI: "the port is already in use"). A port of our own choosing is then chosen again.
    for (let attempt = 1; ; attempt++) {
      const port = options.port ?? (await freePort());
      try {
        return await TestServer.launch(options, port);
      } catch (error) {
        const taken = error instanceof Error && error.message.includes('the port is already in use');
        if (!taken || options.port !== undefined || attempt === 3) throw error;
      }
    }
  }

  private static async launch(options: ServerOptions, port: number): Promise<TestServer> {
    const env: Record<string, string> = {
      ...(process.env as Record<string, string>),
      PORT: String(port),
      HOST: '127.0.0.1',
      WORKERS: String(options.workers ?? 2),
      ADMIN_TOKEN,
      LOG_LEVEL: 'warn',
      ...options.env,
    };
    delete env.DATABASE_URL;
    delete env.DATA_DIR;
    if (options.databaseUrl) env.DATABASE_URL = options.databaseUrl;
    if (options.dataDir) env.DATA_DIR = options.dataDir;
    // detached: its own process group, so a test can kill the whole server (primary + workers).
    const proc = spawn(options.node ?? process.execPath, [...TEST_NODE_FLAGS, options.main ?? MAIN], {
      env,
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const server = new TestServer(proc, port);
    const append = (chunk: Buffer) => {
      server.output += chunk.toString();
    };
    proc.stdout!.on('data', append);
    proc.stderr!.on('data', append);
    await server.waitForOutput(/serving on/, 60_000);
    return server;
  }

  async waitForOutput(pattern: RegExp, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(this.output)) {
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) {
        throw new Error(`server exited before ${pattern}:\n${this.output}`);
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}:\n${this.output}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Sends a signal to the primary and resolves with its exit code. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal);
    return this.exitPromise;
  }

  /** SIGKILL to the whole process group: primary and every worker die at once, nothing drains. */
  async killAll(): Promise<void> {
    try {
      process.kill(-this.proc.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
    await this.exitPromise;
  }

  exited(): Promise<number | null> {
    return this.exitPromise;
  }
}
