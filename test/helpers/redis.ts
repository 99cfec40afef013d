import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './server.js';

const REDIS_SERVER = process.env.REDIS_SERVER_BIN || 'redis-server';

/**
 * Why Redis tests cannot run here, or null when they can. Run by hand without redis-server, the
 * tests skip with this message; in CI (CI=true) a missing redis-server is a failure, not a skip.
 */
export function redisUnavailable(): string | null {
  const probe = spawnSync(REDIS_SERVER, ['--version'], { encoding: 'utf8' });
  if (probe.status === 0) return null;
  const reason = `redis-server not found (install Debian's redis-server, or set REDIS_SERVER_BIN): ${probe.error?.message ?? probe.stderr}`;
  if (process.env.CI === 'true') throw new Error(`CI=true but ${reason}`);
  return reason;
}

export interface TestRedisOptions {
  /** Keep the data across restart() (append-only file, fsync on every write). */
  persistent?: boolean;
  /** Require this password (`requirepass`). */
  password?: string;
}

/** A throwaway redis-server on a free port, in its own temp dir; by default with no persistence. */
export class TestRedis {
  private proc: ChildProcess | null = null;
  output = '';

  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly options: TestRedisOptions = {},
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** The server's process while it runs: for CPU figures. */
  get pid(): number | undefined {
    return this.proc?.pid;
  }

  static async start(options: TestRedisOptions = {}): Promise<TestRedis> {
    const redis = new TestRedis(await freePort(), fs.mkdtempSync(path.join(os.tmpdir(), 'triggers-redis-')), options);
    await redis.restart();
    return redis;
  }

  /**
   * Starts the server (again) on the same port: empty, a Redis restart as clients see it; or, when
   * `persistent`, with what it had stored (an append-only file synced on every write).
   */
  async restart(): Promise<void> {
    if (this.proc) throw new Error('redis-server is already running');
    const persistence = this.options.persistent
      ? ['--appendonly', 'yes', '--appendfsync', 'always']
      : ['--appendonly', 'no'];
    const auth = this.options.password ? ['--requirepass', this.options.password] : [];
    const proc = spawn(
      REDIS_SERVER,
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', ...persistence, ...auth, '--dir', this.dir],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.proc = proc;
    proc.stdout!.on('data', (chunk: Buffer) => {
      this.output += chunk.toString();
    });
    proc.stderr!.on('data', (chunk: Buffer) => {
      this.output += chunk.toString();
    });
    const deadline = Date.now() + 10_000;
    while (!(await this.answersPing())) {
      if (proc.exitCode !== null) throw new Error(`redis-server exited:\n${this.output}`);
      if (Date.now() > deadline) throw new Error(`redis-server did not start:\n${this.output}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Stops this redis-server (by its PID) and waits for it to exit. */
  async stop(): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    this.proc = null;
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((resolve) => proc.once('exit', resolve));
      proc.kill('SIGKILL');
      await exited;
    }
  }

  async destroy(): Promise<void> {
    await this.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  private answersPing(): Promise<boolean> {
    return new Promise((resolve) => {
      const socket = net.connect(this.port, '127.0.0.1');
      let reply = '';
      socket.setTimeout(500, () => {
        socket.destroy();
        resolve(false);
      });
      socket.on('error', () => resolve(false));
      socket.on('connect', () => socket.write('PING\r\n'));
      socket.on('data', (chunk) => {
        reply += chunk.toString();
        if (reply.includes('\r\n')) {
          socket.end();
          // With a password, a server that is up answers PING with NOAUTH.
          resolve(reply.startsWith('+PONG') || reply.startsWith('-NOAUTH'));
        }
      });
    });
  }
}
