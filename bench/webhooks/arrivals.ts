import type { PathCounts, PathDump } from '../webhook-receiver.js';
import { sleep } from './clock.js';
import { say } from './output.js';
import type { ReceiverProcess } from './receiver-process.js';

export interface Arrival {
  complete: boolean;
  counts: Record<string, PathCounts>;
}

/** Polls the receiver until every path has `expected` distinct webhook-ids, or the timeout passes. */
export async function waitForArrivals(
  receiver: ReceiverProcess,
  paths: string[],
  expected: number,
  timeoutMs: number,
): Promise<Arrival> {
  const deadline = Date.now() + timeoutMs;
  let lastReport = Date.now();
  for (;;) {
    const all = await receiver.counts('/');
    const counts = Object.fromEntries(
      paths.map((p) => [p, all[p] ?? { requests: 0, distinct: 0, duplicates: 0, last: 0 }]),
    );
    if (paths.every((p) => counts[p]!.distinct >= expected)) return { complete: true, counts };
    if (Date.now() > deadline) return { complete: false, counts };
    if (Date.now() - lastReport > 15_000) {
      lastReport = Date.now();
      const got = paths.reduce((sum, p) => sum + counts[p]!.distinct, 0);
      say(`  … ${got} of ${expected * paths.length} deliveries so far`);
    }
    await sleep(100);
  }
}

/** Compares what arrived on `pathname` with the accepted ids; returns the dump and problems found. */
export async function checkPath(
  receiver: ReceiverProcess,
  pathname: string,
  answeredAt: Map<string, number>,
): Promise<{ dump: PathDump; problems: string[]; lags: number[] }> {
  const dump = await receiver.dump(pathname);
  const problems: string[] = [];
  const lags: number[] = [];
  let unknown = 0;
  for (let i = 0; i < dump.ids.length; i++) {
    const answered = answeredAt.get(dump.ids[i]!);
    if (answered === undefined) unknown++;
    else lags.push(dump.at[i]! - answered);
  }
  const missing = answeredAt.size - lags.length;
  if (missing > 0) problems.push(`${pathname}: ${missing} of ${answeredAt.size} accepted events never arrived`);
  if (unknown > 0) problems.push(`${pathname}: ${unknown} webhook-ids that were never accepted`);
  return { dump, problems, lags };
}
