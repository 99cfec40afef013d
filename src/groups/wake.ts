import type { Worker } from 'node:cluster';
import os from 'node:os';
import type { Redis } from 'ioredis';
import { newRedis } from '../redis-client.js';
import { sendToPrimary, sendToWorker } from '../ipc.js';
import { log } from '../log.js';

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
 *
 * Across nodes (with REDIS_URL), the primaries do the same among themselves: each publishes the
 * orgs waiting on its node (on change, and every INTEREST_REFRESH_MS so a node that starts later
 * learns them), counts the orgs other nodes publish as waiting too, and sends a node's commits of
 * an org that waits elsewhere over Redis to the primaries, which forward them to their processes.
 * Without Redis, or while it is down, a waiting receive still reads every 2 s.
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

const INTEREST_CHANNEL = 'triggers:group-interest';
const WAKE_CHANNEL = 'triggers:group-wake';
const INTEREST_REFRESH_MS = 5_000;
// A node's published interest is dropped when it has not been refreshed for this long (a node gone).
const INTEREST_EXPIRES_MS = 3 * INTEREST_REFRESH_MS;

interface NodeInterest {
  node: string;
  orgs: string[];
}

interface NodeWake {
  node: string;
  orgs: string[];
}

/** The primary's side: which HTTP process waits for which org, and the forwarding. */
export class GroupWakeRouter {
  private readonly waiting = new Map<string, Set<Worker>>();
  /** Orgs waiting on other nodes (from Redis), by node, with when that node last said so. */
  private readonly remote = new Map<string, { orgs: Set<string>; at: number }>();
  private readonly node = `${os.hostname()}:${process.pid}`;
  private readonly publisher: Redis | null;
  private readonly subscriber: Redis | null;
  private readonly refresh: NodeJS.Timeout | null;

  constructor(
    private readonly httpWorkers: () => Iterable<Worker>,
    redisUrl: string | null = null,
  ) {
    this.publisher = redisUrl ? newRedis(redisUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: false }) : null;
    this.subscriber = redisUrl ? newRedis(redisUrl, { maxRetriesPerRequest: null }) : null;
    this.publisher?.on('error', () => {}); // the rate limiter already reports Redis outages
    let warned = false;
    this.subscriber?.on('error', (error) => {
      if (!warned)
        log.warn(
          { err: error.message },
          'long-poll wake-ups from other nodes unavailable (Redis); waiting receives read every 2 s',
        );
      warned = true;
    });
    this.subscriber?.on('ready', () => {
      warned = false;
    });
    this.subscriber?.subscribe(INTEREST_CHANNEL, WAKE_CHANNEL).catch(() => {});
    this.subscriber?.on('message', (channel: string, text: string) => this.onRedisMessage(channel, text));
    this.refresh = redisUrl ? setInterval(() => this.refreshRemote(), INTEREST_REFRESH_MS) : null;
    this.refresh?.unref();
  }

  readonly onWorkerMessage = (worker: Worker, message: unknown): void => {
    const type = typeOf(message);
    if (type === 'group_interest') this.interest(worker, message as GroupInterestMessage);
    else if (type === 'group_wake') {
      const orgs = (message as GroupWakeMessage).orgs;
      this.forward(worker, orgs);
      this.publishWake(orgs);
    }
  };

  stop(): void {
    if (this.refresh) clearInterval(this.refresh);
    this.publisher?.disconnect();
    this.subscriber?.disconnect();
  }

  private onRedisMessage(channel: string, text: string): void {
    let message: NodeInterest | NodeWake;
    try {
      message = JSON.parse(text) as NodeInterest;
    } catch {
      return;
    }
    if (typeof message?.node !== 'string' || message.node === this.node || !Array.isArray(message.orgs)) return;
    const orgs = message.orgs.filter((org): org is string => typeof org === 'string');
    if (channel === WAKE_CHANNEL) {
      this.forward(null, orgs);
      return;
    }
    const before = this.remote.get(message.node);
    this.remote.set(message.node, { orgs: new Set(orgs), at: Date.now() });
    if (!before || before.orgs.size !== orgs.length || orgs.some((org) => !before.orgs.has(org))) this.tellWorkers();
  }

  /** Publishes this node's waiting orgs again, and forgets nodes that stopped publishing. */
  private refreshRemote(): void {
    this.publishInterest();
    let changed = false;
    for (const [node, entry] of this.remote) {
      if (Date.now() - entry.at > INTEREST_EXPIRES_MS) {
        this.remote.delete(node);
        changed = true;
      }
    }
    if (changed) this.tellWorkers();
  }

  private publishInterest(): void {
    if (this.publisher?.status !== 'ready') return;
    this.publisher
      .publish(
        INTEREST_CHANNEL,
        JSON.stringify({ node: this.node, orgs: [...this.waiting.keys()] } satisfies NodeInterest),
      )
      .catch(() => {});
  }

  /** A node's commits of orgs that wait on another node go to the other primaries. */
  private publishWake(orgs: string[]): void {
    if (this.remote.size === 0 || this.publisher?.status !== 'ready') return;
    const elsewhere = orgs.filter((org) => [...this.remote.values()].some((entry) => entry.orgs.has(org)));
    if (elsewhere.length > 0)
      this.publisher
        .publish(WAKE_CHANNEL, JSON.stringify({ node: this.node, orgs: elsewhere } satisfies NodeWake))
        .catch(() => {});
  }

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
      if (!workers) this.waiting.set(message.orgId, (workers = new Set()));
      const had = workers.size > 0;
      workers.add(worker);
      if (!had) this.announce();
    } else if (workers?.delete(worker) && workers.size === 0) {
      this.waiting.delete(message.orgId);
      this.announce();
    }
  }

  private forward(from: Worker | null, orgs: string[]): void {
    const targets = new Map<Worker, string[]>();
    for (const orgId of orgs) {
      for (const worker of this.waiting.get(orgId) ?? []) {
        if (worker === from) continue;
        let list = targets.get(worker);
        if (!list) targets.set(worker, (list = []));
        list.push(orgId);
      }
    }
    for (const [worker, list] of targets)
      sendToWorker(worker, { type: 'group_wake', orgs: list } satisfies GroupWakeMessage);
  }

  /** The node's waiting orgs changed: tell the other nodes, and this node's processes. */
  private announce(): void {
    this.publishInterest();
    this.tellWorkers();
  }

  private tellWorkers(): void {
    const orgs = new Set(this.waiting.keys());
    for (const entry of this.remote.values()) for (const org of entry.orgs) orgs.add(org);
    const message: GroupInterestSetMessage = { type: 'group_interest_set', orgs: [...orgs] };
    for (const worker of this.httpWorkers()) sendToWorker(worker, message);
  }
}
