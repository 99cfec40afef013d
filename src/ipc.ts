import type { Worker } from 'node:cluster';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import { log } from './log.js';

/**
 * The IPC protocol of one node: every message the primary, the HTTP workers and the delivery
 * workers exchange over the cluster channel, one snake_case `type` each, and the only way to send
 * or recognise one. The rooms that speak it (cluster, ratelimit, delivery, groups, metrics) all
 * import this module; none defines a message of its own.
 *
 *   worker → primary      ready, start_failed, ratelimit_lease, delivery_wake, group_interest,
 *                         group_wake, metrics_scrape, metrics_collected
 *   primary → worker      shutdown, roles, ratelimit_grant, delivery_wake, group_interest_set,
 *                         group_wake, metrics_collect, metrics_scraped
 *
 * prom-client's own cluster messages ("prom-client:…") are never sent: src/metrics/cluster.ts
 * aggregates with messages of its own, below.
 */

/* ---------- lifecycle (src/cluster/) ---------- */

/** A worker is listening (HTTP) or connected and leasing (delivery). */
export interface ReadyMessage {
  type: 'ready';
  role: string;
}
/** A worker that cannot start says why before it exits; the primary prints it once (issue 29). */
export interface StartFailedMessage {
  type: 'start_failed';
  role: string;
  message: string;
}
/** The primary asks a worker to drain and exit. */
export interface ShutdownMessage {
  type: 'shutdown';
}
/**
 * Whether every worker role of the node is at its count, for GET /status (checks.workers): the
 * primary tells every worker whenever the answer changes (src/cluster/role-health.ts).
 */
export interface RolesMessage {
  type: 'roles';
  workers: string;
}

/* ---------- rate limits without Redis (src/ratelimit/ipc-store.ts) ---------- */

export interface LeaseRequestMessage {
  type: 'ratelimit_lease';
  seq: number;
  orgId: string;
  rate: number;
  burst: number;
  want: number;
}
export interface LeaseGrantMessage {
  type: 'ratelimit_grant';
  seq: number;
  granted: number;
  tokens: number;
}

/* ---------- webhook wake-ups (src/delivery/wake.ts) ---------- */

/** From an HTTP worker to the primary, which passes it on to every delivery process of the node. */
export interface DeliveryWakeMessage {
  type: 'delivery_wake';
  /** Orgs with newly committed events. */
  orgs: string[];
  /** Some org's endpoints were created, changed, deleted or recovered. */
  endpoints: boolean;
  /** The sending node (hostname and primary pid): a node ignores its own wake-ups on Redis. */
  node: string;
}

/* ---------- long-poll wake-ups of consumer groups (src/groups/wake.ts) ---------- */

/** An HTTP worker: a receive of this org starts or stops waiting here. */
export interface GroupInterestMessage {
  type: 'group_interest';
  orgId: string;
  waiting: boolean;
}
/** The primary: every org that waits somewhere (on this node or, over Redis, another). */
export interface GroupInterestSetMessage {
  type: 'group_interest_set';
  orgs: string[];
}
/** Events of these orgs committed: from the HTTP worker that flushed, and on to those that wait. */
export interface GroupWakeMessage {
  type: 'group_wake';
  orgs: string[];
}

/* ---------- cluster-wide /metrics (src/metrics/cluster.ts) ---------- */

/** One process's registry, as prom-client's getMetricsAsJSON gives it. */
export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

/** An HTTP worker asks for the node's metrics text. */
export interface MetricsScrapeMessage {
  type: 'metrics_scrape';
  id: number;
}
/** The primary's answer to one scrape. */
export interface MetricsScrapedMessage {
  type: 'metrics_scraped';
  id: number;
  text: string;
}
/** The primary asks every worker for its registry. */
export interface MetricsCollectMessage {
  type: 'metrics_collect';
  id: number;
}
export interface MetricsCollectedMessage {
  type: 'metrics_collected';
  id: number;
  metrics: MetricsJson;
}

/** What a worker sends to its primary. */
export type ToPrimaryMessage =
  | ReadyMessage
  | StartFailedMessage
  | LeaseRequestMessage
  | DeliveryWakeMessage
  | GroupInterestMessage
  | GroupWakeMessage
  | MetricsScrapeMessage
  | MetricsCollectedMessage;

/** What the primary sends to a worker. */
export type ToWorkerMessage =
  | ShutdownMessage
  | RolesMessage
  | LeaseGrantMessage
  | DeliveryWakeMessage
  | GroupInterestSetMessage
  | GroupWakeMessage
  | MetricsCollectMessage
  | MetricsScrapedMessage;

export type IpcMessage = ToPrimaryMessage | ToWorkerMessage;
export type IpcMessageType = IpcMessage['type'];

/**
 * The type guard for every receiver: whether `message` (anything that came over the channel) is
 * the protocol's message of this type. Only the `type` is checked: both ends run the same build.
 */
export function isMessage<T extends IpcMessageType>(
  message: unknown,
  type: T,
): message is Extract<IpcMessage, { type: T }> {
  return (message as { type?: unknown } | null)?.type === type;
}

/**
 * Every IPC send goes through here. A send without a callback reports a closed channel (a worker
 * that died a moment ago, a primary that is gone while its workers drain) as an 'error' event;
 * with nobody listening, that takes the sending process down. With a callback the failure is
 * reported there instead, and a message to a process that is gone has nobody to miss it.
 */
const ignoreClosedChannel = (): void => {};

/** From a worker: false when there is no channel (no primary, or it is gone). */
export function sendToPrimary(
  message: ToPrimaryMessage,
  onFailed: (error: Error) => void = ignoreClosedChannel,
): boolean {
  if (!process.send || !process.connected) return false;
  process.send(message, undefined, undefined, (error: Error | null) => {
    if (error) onFailed(error);
  });
  return true;
}

/** From the primary: false when the worker's channel is closed already. */
export function sendToWorker(worker: Worker, message: ToWorkerMessage): boolean {
  if (!worker.isConnected()) return false;
  worker.send(message, undefined, ignoreClosedChannel);
  return true;
}

/**
 * The primary listens for 'error' on each worker it forks: an IPC write failing outside a send
 * callback (EPIPE on a channel whose other end just died) is logged, never thrown.
 */
export function logWorkerErrors(worker: Worker, role: string): void {
  worker.on('error', (error: Error) =>
    log.warn({ err: error, pid: worker.process.pid, role }, 'IPC with a worker failed (it is exiting)'),
  );
}
