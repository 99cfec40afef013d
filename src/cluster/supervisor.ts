import cluster, { type Worker } from 'node:cluster';
import { log } from '../log.js';
import { workerRestarts } from '../metrics/metrics.js';
import { DEFAULT_BACKOFF, RoleCrashPolicy } from '../crash-policy.js';
import { logWorkerErrors, sendToWorker } from '../ipc.js';
import { ENV_ROLE, type RolesMessage, type WorkerMessage, type WorkerRole } from './messages.js';
import { describeRoles } from './role-health.js';

export interface SupervisorOptions {
  /** Environment every worker gets (database URL, start time…); the role is added per fork. */
  env: Record<string, string>;
  counts: Record<WorkerRole, number>;
  /** CRASH_LOOP_LIMIT deaths before ready within CRASH_LOOP_WINDOW_S give up; limit 0 never does. */
  crashLoop: { limit: number; windowMs: number };
  shutdownTimeoutMs: number;
  /** A role cannot stay up: the primary stops everything and exits non-zero. */
  onGiveUp(reason: string): void;
}

/** The start failed: a worker died before the node served (its own words when it sent them). */
export class StartFailed extends Error {}

interface Tracked {
  role: WorkerRole;
  readyAt: number | null;
  /** What the worker said when it could not start ('start_failed'). */
  failure: string | null;
  healthyTimer: NodeJS.Timeout | null;
}

/**
 * Forks the node's workers, knows which are ready, replaces the ones that die with back-off
 * (./crash-policy.ts), gives up on a role that cannot stay up, tells the workers whether every
 * role is at its count (/status), and stops them all on shutdown.
 */
export class WorkerSupervisor {
  private readonly workers = new Map<Worker, Tracked>();
  private readonly policies = new Map<WorkerRole, RoleCrashPolicy>();
  private readonly pendingForks = new Set<NodeJS.Timeout>();
  private phase: 'starting' | 'running' | 'stopping' = 'starting';
  /** Until every first worker is ready: those not yet ready, and the start's promise. */
  private startup: { waiting: Set<Worker>; resolve(): void; reject(error: StartFailed): void } | null = null;

  constructor(private readonly options: SupervisorOptions) {
    for (const role of Object.keys(options.counts) as WorkerRole[]) {
      this.policies.set(role, new RoleCrashPolicy({ ...DEFAULT_BACKOFF, ...options.crashLoop }));
      workerRestarts.inc({ role }, 0); // the series exists from the start, for rate() and alerts
    }
    cluster.on('message', this.onMessage);
    cluster.on('exit', this.onExit);
  }

  /** Forks every role; resolves when all are ready, rejects with StartFailed when one dies first. */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.startup = { waiting: new Set(), resolve, reject };
      for (const [role, count] of Object.entries(this.options.counts) as Array<[WorkerRole, number]>) {
        for (let i = 0; i < count; i++) this.startup.waiting.add(this.fork(role));
      }
    });
  }

  /** Connected workers of a role (the delivery processes, for wake-ups). */
  *connected(role: WorkerRole): Iterable<Worker> {
    for (const [worker, tracked] of this.workers) if (tracked.role === role && worker.isConnected()) yield worker;
  }

  /** Asks every worker to drain; SIGKILL for any still running after SHUTDOWN_TIMEOUT_MS. */
  async stop(): Promise<void> {
    this.phase = 'stopping';
    for (const timer of this.pendingForks) clearTimeout(timer);
    this.pendingForks.clear();
    const exits = [...this.workers.keys()].map(
      (worker) =>
        new Promise<void>((resolve) => {
          if (worker.isDead()) return resolve();
          worker.once('exit', () => resolve());
          // One that never became ready has no drain handler yet, and nothing to drain.
          if (this.workers.get(worker)?.readyAt === null || !sendToWorker(worker, { type: 'shutdown' }))
            worker.process.kill('SIGKILL');
        }),
    );
    const killTimer = setTimeout(() => {
      for (const worker of this.workers.keys()) if (!worker.isDead()) worker.process.kill('SIGKILL');
    }, this.options.shutdownTimeoutMs);
    await Promise.all(exits);
    clearTimeout(killTimer);
  }

  private fork(role: WorkerRole): Worker {
    const worker = cluster.fork({ ...this.options.env, [ENV_ROLE]: role });
    logWorkerErrors(worker, role);
    this.workers.set(worker, { role, readyAt: null, failure: null, healthyTimer: null });
    return worker;
  }

  private readonly onMessage = (worker: Worker, message: WorkerMessage | null): void => {
    const tracked = this.workers.get(worker);
    if (!tracked) return;
    if (message?.type === 'ready') {
      tracked.readyAt = Date.now();
      if (this.phase === 'running')
        log.info({ pid: worker.process.pid, role: tracked.role }, 'replacement worker ready');
      // Ready and still alive healthyMs later: the role's crash streak is over.
      tracked.healthyTimer = setTimeout(() => this.policies.get(tracked.role)!.stayedUp(), DEFAULT_BACKOFF.healthyMs);
      tracked.healthyTimer.unref();
      if (this.startup?.waiting.delete(worker) && this.startup.waiting.size === 0) {
        const { resolve } = this.startup;
        this.startup = null;
        this.phase = 'running';
        resolve();
      }
      this.broadcastHealth();
    } else if (message?.type === 'start_failed') {
      tracked.failure = message.message;
    }
  };

  private readonly onExit = (worker: Worker, code: number | null, signal: string | null): void => {
    const tracked = this.workers.get(worker);
    if (!tracked) return;
    this.workers.delete(worker);
    if (tracked.healthyTimer) clearTimeout(tracked.healthyTimer);
    if (this.phase === 'stopping') return;
    const how = signal ? `killed by ${signal}` : `exit code ${code}`;
    if (this.phase === 'starting') {
      this.startup?.reject(
        new StartFailed(
          tracked.failure ?? `a ${tracked.role} worker stopped during start-up (${how}); see the log above`,
        ),
      );
      this.startup = null;
      return;
    }
    this.broadcastHealth();
    const decision = this.policies.get(tracked.role)!.died(Date.now(), tracked.readyAt);
    if ('giveUp' in decision) {
      const window = Math.round(this.options.crashLoop.windowMs / 1000);
      const last = tracked.failure ?? how;
      this.options.onGiveUp(
        `the ${tracked.role} workers cannot stay up: ${decision.deaths} died before serving within ${window} s (CRASH_LOOP_LIMIT, CRASH_LOOP_WINDOW_S); the last one: ${last}`,
      );
      return;
    }
    log.error(
      {
        pid: worker.process.pid,
        code,
        signal,
        role: tracked.role,
        replaceInMs: decision.replaceInMs,
        failure: tracked.failure ?? undefined,
      },
      'worker died; starting a replacement',
    );
    const timer = setTimeout(() => {
      this.pendingForks.delete(timer);
      if (this.phase !== 'running') return;
      workerRestarts.inc({ role: tracked.role });
      this.fork(tracked.role);
    }, decision.replaceInMs);
    this.pendingForks.add(timer);
  };

  /** Tells every worker whether each role is at its count: after every readiness and death. */
  private broadcastHealth(): void {
    const counts = (Object.entries(this.options.counts) as Array<[WorkerRole, number]>).map(([role, wanted]) => ({
      role,
      wanted,
      ready: [...this.workers.values()].filter((tracked) => tracked.role === role && tracked.readyAt !== null).length,
    }));
    const message: RolesMessage = { type: 'roles', workers: describeRoles(counts) };
    for (const worker of this.workers.keys()) sendToWorker(worker, message);
  }
}
