import type { Worker } from 'node:cluster';
import { sendToPrimary, sendToWorker } from '../ipc.js';

/**
 * Wake-ups for long-poll receives (src/groups/waiters.ts) across the HTTP processes of a node,
 * the way webhook streams are woken (src/delivery/wake.ts): after a flush commits, the HTTP
 * process that flushed wakes its own waiters at once and, for orgs that wait in another process,
 * sends the orgs to the primary, which forwards them to the processes where they wait.
 *
 * So that flushes of orgs nobody waits for cost nothing, each HTTP process tells the primary when
 * an org starts or stops waiting there (group_interest), and the primary tells every HTTP process
 * the set of orgs waiting anywhere on the node (group_interest_set). A commit in the moment
 * before a process learns of a new waiter is not forwarded: the waiting receive reads again a
 * little after it starts (src/groups/routes.ts), which covers that moment.
 */

export interface GroupInterestMessage {
  type: 'group_interest';
  orgId: string;
  waiting: boolean;
}

export interface GroupInterestSetMessage {
  type: 'group_interest_set';
  orgs: string[];
}

export interface GroupWakeMessage {
  type: 'group_wake';
  orgs: string[];
}

type Message = GroupInterestMessage | GroupInterestSetMessage | GroupWakeMessage;

function typeOf(message: unknown): string | undefined {
  const type = (message as { type?: unknown } | null)?.type;
  return typeof type === 'string' ? type : undefined;
}

export function isGroupMessage(message: unknown): message is Message {
  const type = typeOf(message);
  return type === 'group_interest' || type === 'group_interest_set' || type === 'group_wake';
}

/** The HTTP process's side. */
export class GroupWakeRelay {
  /** Orgs waiting in some process of the node (this one's included). */
  private waitingOnNode = new Set<string>();
  private readonly onMessage = (message: unknown) => {
    const type = typeOf(message);
    if (type === 'group_wake') this.wakeLocal((message as GroupWakeMessage).orgs);
    else if (type === 'group_interest_set') this.waitingOnNode = new Set((message as GroupInterestSetMessage).orgs);
  };

  constructor(private readonly wakeLocal: (orgIds: Iterable<string>) => void) {
    process.on('message', this.onMessage);
  }

  /** From GroupWaiters: an org starts or stops waiting here. */
  interest(orgId: string, waiting: boolean): void {
    if (waiting) this.waitingOnNode.add(orgId);
    sendToPrimary({ type: 'group_interest', orgId, waiting } satisfies GroupInterestMessage);
  }

  /** A flush of these orgs committed here. */
  committed(orgIds: Iterable<string>): void {
    this.wakeLocal(orgIds);
    if (this.waitingOnNode.size === 0) return;
    let forward: string[] | null = null;
    for (const orgId of orgIds) {
      if (this.waitingOnNode.has(orgId)) (forward ??= []).push(orgId);
    }
    if (forward) sendToPrimary({ type: 'group_wake', orgs: forward } satisfies GroupWakeMessage);
  }

  stop(): void {
    process.off('message', this.onMessage);
  }
}

/** The primary's side: which HTTP process waits for which org, and the forwarding. */
export class GroupWakeRouter {
  private readonly waiting = new Map<string, Set<Worker>>();

  constructor(private readonly httpWorkers: () => Iterable<Worker>) {}

  readonly onWorkerMessage = (worker: Worker, message: unknown): void => {
    const type = typeOf(message);
    if (type === 'group_interest') this.interest(worker, message as GroupInterestMessage);
    else if (type === 'group_wake') this.forward(worker, (message as GroupWakeMessage).orgs);
  };

  readonly onWorkerExit = (worker: Worker): void => {
    let changed = false;
    for (const [orgId, workers] of this.waiting) {
      if (!workers.delete(worker)) continue;
      changed = true;
      if (workers.size === 0) this.waiting.delete(orgId);
    }
    if (changed) this.announce();
  };

  private interest(worker: Worker, message: GroupInterestMessage): void {
    let workers = this.waiting.get(message.orgId);
    if (message.waiting) {
      if (!workers) this.waiting.set(message.orgId, workers = new Set());
      const had = workers.size > 0;
      workers.add(worker);
      if (!had) this.announce();
    } else if (workers?.delete(worker) && workers.size === 0) {
      this.waiting.delete(message.orgId);
      this.announce();
    }
  }

  private forward(from: Worker, orgs: string[]): void {
    const targets = new Map<Worker, string[]>();
    for (const orgId of orgs) {
      for (const worker of this.waiting.get(orgId) ?? []) {
        if (worker === from) continue;
        let list = targets.get(worker);
        if (!list) targets.set(worker, list = []);
        list.push(orgId);
      }
    }
    for (const [worker, list] of targets) sendToWorker(worker, { type: 'group_wake', orgs: list } satisfies GroupWakeMessage);
  }

  private announce(): void {
    const message: GroupInterestSetMessage = { type: 'group_interest_set', orgs: [...this.waiting.keys()] };
    for (const worker of this.httpWorkers()) sendToWorker(worker, message);
  }
}
