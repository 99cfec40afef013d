import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import { log } from '../log.js';
import { registry, startDefaultMetrics } from './metrics.js';

/**
 * Cluster-wide /metrics. A scrape reaches one HTTP worker, which asks the primary; the primary
 * collects every worker's registry as JSON over cluster IPC, adds its own, and merges them with
 * prom-client's AggregatorRegistry.aggregate (sums counters, histograms and gauges).
 *
 * Why not AggregatorRegistry#clusterMetrics(): it fails the whole scrape when any one worker
 * does not answer, and only after a fixed 5 s. Here a worker that is busy, starting or dying is
 * waited for at most COLLECT_TIMEOUT_MS; the scrape answers with what arrived and says how many
 * processes were missing in metrics_scrape_workers_missing.
 *
 * The messages have a `type` prefixed "metrics:", so they never match the project's own IPC
 * messages (ready, shutdown, ratelimit_*) nor prom-client's ("prom-client:…").
 */
const COLLECT_TIMEOUT_MS = 1500;
// The worker's wait for the primary: the primary's collection plus its own aggregation time.
const SCRAPE_TIMEOUT_MS = COLLECT_TIMEOUT_MS + 2000;

type MetricsJson = Awaited<ReturnType<typeof registry.getMetricsAsJSON>>;

type MetricsMessage =
  | { type: 'metrics:scrape'; id: number }
  | { type: 'metrics:scraped'; id: number; text: string }
  | { type: 'metrics:collect'; id: number }
  | { type: 'metrics:collected'; id: number; metrics: MetricsJson };

function isMetricsMessage(message: unknown): message is MetricsMessage {
  const type = (message as { type?: unknown } | null)?.type;
  return typeof type === 'string' && type.startsWith('metrics:');
}

/* ---------- worker side ---------- */

let responderInstalled = false;
const pendingScrapes = new Map<number, (text: string | null) => void>();
let nextScrapeId = 1;

/**
 * Every worker process (any role) calls this once at start: it answers the primary's collection
 * requests with this process's registry, and receives the answers to its own scrapes.
 */
export function installWorkerMetrics(): void {
  if (responderInstalled || cluster.isPrimary) return;
  responderInstalled = true;
  startDefaultMetrics();
  process.on('message', (message: unknown) => {
    if (!isMetricsMessage(message)) return;
    if (message.type === 'metrics:collect') {
      registry.getMetricsAsJSON().then(
        (metrics) => sendToPrimary({ type: 'metrics:collected', id: message.id, metrics }),
        (error: Error) => log.warn({ err: error.message }, 'collecting metrics failed'),
      );
    } else if (message.type === 'metrics:scraped') {
      const resolve = pendingScrapes.get(message.id);
      if (resolve) {
        pendingScrapes.delete(message.id);
        resolve(message.text);
      }
    }
  });
}

function sendToPrimary(message: MetricsMessage): boolean {
  if (!process.connected || !process.send) return false;
  // The callback swallows the error of a channel that closed meanwhile (primary gone, draining).
  process.send(message, undefined, undefined, () => {});
  return true;
}

/** The cluster-wide metrics text, or null when the primary did not answer in time. */
export function scrapeCluster(): Promise<string | null> {
  const id = nextScrapeId++;
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      pendingScrapes.delete(id);
      resolve(null);
    }, SCRAPE_TIMEOUT_MS);
    pendingScrapes.set(id, (text) => {
      clearTimeout(timer);
      resolve(text);
    });
    if (!sendToPrimary({ type: 'metrics:scrape', id })) {
      clearTimeout(timer);
      pendingScrapes.delete(id);
      resolve(null);
    }
  });
}

/* ---------- primary side ---------- */

interface Collection {
  id: number;
  answers: MetricsJson[];
  waitingFor: Set<Worker>;
  finish(): void;
}

/**
 * The primary's half: answers 'metrics:scrape' from any worker with the aggregated text.
 * Concurrent scrapes share one collection round.
 */
export function serveClusterMetrics(): void {
  startDefaultMetrics();
  let nextCollectionId = 1;
  let current: Collection | null = null;
  let inFlight: Promise<string> | null = null;

  const collect = (): Promise<string> =>
    new Promise((resolve) => {
      const collection: Collection = {
        id: nextCollectionId++,
        answers: [],
        waitingFor: new Set(),
        finish: () => {
          if (current !== collection) return;
          current = null;
          clearTimeout(timer);
          const missing = collection.waitingFor.size;
          if (missing > 0) log.warn({ missing }, 'metrics scrape answered without some workers (no answer in time)');
          aggregate(collection.answers, missing).then(resolve, (error: Error) => {
            log.error({ err: error.message }, 'aggregating metrics failed');
            resolve(scrapeStatusText(0, missing));
          });
        },
      };
      current = collection;
      const timer = setTimeout(collection.finish, COLLECT_TIMEOUT_MS);
      for (const worker of Object.values(cluster.workers ?? {})) {
        if (!worker || !worker.isConnected()) continue;
        collection.waitingFor.add(worker);
        worker.send({ type: 'metrics:collect', id: collection.id } satisfies MetricsMessage, undefined, () => {});
      }
      if (collection.waitingFor.size === 0) setImmediate(collection.finish);
    });

  cluster.on('message', (worker: Worker, message: unknown) => {
    if (!isMetricsMessage(message)) return;
    if (message.type === 'metrics:collected') {
      if (current === null || current.id !== message.id || !current.waitingFor.delete(worker)) return;
      current.answers.push(message.metrics);
      if (current.waitingFor.size === 0) current.finish();
    } else if (message.type === 'metrics:scrape') {
      inFlight ??= collect().finally(() => {
        inFlight = null;
      });
      void inFlight.then((text) => {
        if (worker.isConnected())
          worker.send({ type: 'metrics:scraped', id: message.id, text } satisfies MetricsMessage, undefined, () => {});
      });
    }
  });
  // A worker that exits mid-collection will never answer: stop waiting for it.
  cluster.on('exit', (worker) => {
    if (current && current.waitingFor.delete(worker) && current.waitingFor.size === 0) current.finish();
  });
}

function scrapeStatus(answered: number, missing: number): MetricsJson {
  return [
    {
      name: 'metrics_scrape_workers_missing',
      help: 'Worker processes that did not send their metrics in time for this scrape (their counts are absent from it).',
      type: 'gauge' as never,
      aggregator: 'sum',
      values: [{ value: missing, labels: {} }],
    },
    {
      name: 'metrics_scrape_processes',
      help: 'Processes whose metrics this scrape aggregates (the primary and the workers that answered).',
      type: 'gauge' as never,
      aggregator: 'sum',
      values: [{ value: answered, labels: {} }],
    },
  ] as unknown as MetricsJson;
}

function scrapeStatusText(answered: number, missing: number): string {
  return (
    `# HELP metrics_scrape_workers_missing Worker processes that did not send their metrics in time for this scrape.\n` +
    `# TYPE metrics_scrape_workers_missing gauge\nmetrics_scrape_workers_missing ${missing}\n` +
    `# HELP metrics_scrape_processes Processes whose metrics this scrape aggregates.\n` +
    `# TYPE metrics_scrape_processes gauge\nmetrics_scrape_processes ${answered}\n`
  );
}

async function aggregate(workerAnswers: MetricsJson[], missing: number): Promise<string> {
  const own = await registry.getMetricsAsJSON();
  const all = [own, ...workerAnswers, scrapeStatus(workerAnswers.length + 1, missing)];
  return AggregatorRegistry.aggregate(all).metrics();
}
