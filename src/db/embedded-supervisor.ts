import type { ChildProcess } from 'node:child_process';
import { RoleCrashPolicy } from '../crash-policy.js';

/** What the server hears about its embedded Postgres's restarts. */
export interface PostgresSupervision {
  /** A restart begins (worker_restarts_total{role="postgres"}). */
  onRestart(): void;
  onDown(message: string): void;
  onUp(message: string): void;
}

// Postgres that dies under the server is started again after 1 s, 2 s, 4 s… at most 30 s (at
// once if it had run 10 s); never given up: a server without its database is degraded, not gone.
const POSTGRES_BACKOFF = { limit: 0, windowMs: 60_000, baseDelayMs: 1_000, maxDelayMs: 30_000, healthyMs: 10_000 };

/**
 * The server supervises its embedded Postgres like a worker: when the postmaster exits under it
 * (killed, crashed), it is started again with back-off (./embedded.ts gives `launch`, which
 * resolves once Postgres answers and rejects when it exits first).
 */
export class PostmasterSupervisor {
  private stopping = false;
  private restartTimer: NodeJS.Timeout | null = null;
  private readonly policy = new RoleCrashPolicy(POSTGRES_BACKOFF);

  constructor(
    private readonly launch: () => Promise<ChildProcess>,
    private readonly hooks: PostgresSupervision | undefined,
    /** Named in the messages: where Postgres says why it stopped. */
    private readonly logPath: string,
  ) {}

  /** The first start: throws as `launch` does; then watches. */
  async start(): Promise<void> {
    this.watch(await this.launch(), Date.now());
  }

  /** The server stops Postgres itself from now on: no more restarts. */
  stop(): void {
    this.stopping = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
  }

  private watch(child: ChildProcess, readyAt: number): void {
    const onExit = (code: number | null, signal: string | null) => {
      if (this.stopping || !this.hooks) return;
      this.restartLater(
        readyAt,
        `the embedded Postgres (pid ${child.pid}) exited (${signal ? `killed by ${signal}` : `exit code ${code}`})`,
      );
    };
    if (child.exitCode !== null || child.signalCode !== null) onExit(child.exitCode, child.signalCode);
    else child.once('exit', onExit);
  }

  private restartLater(readyAt: number | null, what: string): void {
    const hooks = this.hooks!;
    const { replaceInMs } = this.policy.died(Date.now(), readyAt) as { replaceInMs: number };
    hooks.onDown(`${what}; starting it again in ${replaceInMs} ms (${this.logPath})`);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (this.stopping) return;
      hooks.onRestart();
      this.launch().then(
        (child) => {
          if (this.stopping) return;
          hooks.onUp(`the embedded Postgres is running again (pid ${child.pid})`);
          this.watch(child, Date.now());
        },
        (error: Error) => {
          if (!this.stopping)
            this.restartLater(null, `the embedded Postgres did not start: ${error.message.split('\n')[0]}`);
        },
      );
    }, replaceInMs);
  }
}
