import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ADMIN_TOKEN } from '../../test/helpers/server.js';
import { postmasterPid } from '../proc-stats.js';
import { sleep } from './clock.js';
import { NOISY_ENDPOINTS, WEBHOOK_TIMEOUT_MS } from './settings.js';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/main.js');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!alive(pid)) return true;
    await sleep(50);
  }
  return !alive(pid);
}

/** `node dist/src/main.js` as the tests start it, with its own embedded Postgres under dataDir. */
export class ServerProcess {
  output = '';
  private readonly exitPromise: Promise<number | null>;

  private constructor(
    readonly proc: ChildProcess,
    readonly port: number,
    readonly dataDir: string,
  ) {
    this.exitPromise = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get pgDir(): string {
    return path.join(this.dataDir, 'pg');
  }

  static spawn(dataDir: string, port: number): ServerProcess {
    const env: Record<string, string> = { ...(process.env as Record<string, string>) };
    for (const name of ['DATABASE_URL', 'DATA_DIR', 'REDIS_URL', 'METRICS_TOKEN']) delete env[name];
    Object.assign(env, {
      PORT: String(port),
      HOST: '127.0.0.1',
      WORKERS: '2',
      ADMIN_TOKEN,
      LOG_LEVEL: 'warn',
      DATA_DIR: dataDir,
      WEBHOOK_ALLOW_HTTP: 'true',
      WEBHOOK_ALLOW_PRIVATE: 'true',
      WEBHOOK_TIMEOUT_MS: String(WEBHOOK_TIMEOUT_MS),
      // The noisy scenario's org A has NOISY_ENDPOINTS endpoints (the default cap is 100 an org).
      WEBHOOK_MAX_ENDPOINTS_PER_ORG: String(Math.max(100, NOISY_ENDPOINTS)),
    });
    // DELIVERY_WORKERS (and any other setting) comes through from this process's environment.
    // detached: its own process group, so that a server that does not stop can be killed whole.
    const proc = spawn(process.execPath, [MAIN], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const server = new ServerProcess(proc, port, dataDir);
    const append = (chunk: Buffer) => {
      server.output += chunk.toString();
      if (server.output.length > 200_000) server.output = server.output.slice(-100_000);
    };
    proc.stdout!.on('data', append);
    proc.stderr!.on('data', append);
    return server;
  }

  running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!/serving on/.test(this.output)) {
      if (!this.running()) throw new Error(`the server exited before it served:\n${this.tail()}`);
      if (Date.now() > deadline)
        throw new Error(`the server did not serve within ${timeoutMs / 1000} s:\n${this.tail()}`);
      await sleep(50);
    }
  }

  tail(chars = 4_000): string {
    return this.output.slice(-chars);
  }

  postmasterPid(): number | null {
    return postmasterPid(this.pgDir);
  }

  /** SIGTERM and wait; if it has not exited after 45 s, SIGKILL its process group. Then make sure its Postgres is down. */
  async stop(): Promise<void> {
    const postmaster = this.postmasterPid();
    if (this.running()) {
      this.proc.kill('SIGTERM');
      const exited = await Promise.race([this.exitPromise.then(() => true), sleep(45_000).then(() => false)]);
      if (!exited) {
        process.stderr.write(
          'bench:webhooks: the server did not exit within 45 s of SIGTERM; killing its process group\n',
        );
        try {
          process.kill(-this.proc.pid!, 'SIGKILL');
        } catch {
          // already gone
        }
        await this.exitPromise;
      }
    }
    // The server stops its embedded Postgres on a clean exit; after a kill it would be left running.
    if (postmaster !== null && alive(postmaster)) {
      try {
        process.kill(postmaster, 'SIGINT');
      } catch {
        // gone meanwhile
      }
      if (!(await waitGone(postmaster, 20_000))) {
        try {
          process.kill(postmaster, 'SIGKILL');
        } catch {
          // gone meanwhile
        }
        await waitGone(postmaster, 5_000);
      }
    }
  }
}
