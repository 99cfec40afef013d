import { createHmac, randomBytes } from 'node:crypto';
import { Pool } from 'undici';
import { machineBusySeconds, procStat } from '../proc-stats.js';
import { now } from './clock.js';
import { emptySplit } from './cpu-split.js';
import { payloadFor } from './payload.js';
import type { ReceiverProcess } from './receiver-process.js';
import { recordRow } from './report.js';
import { failures, type Row } from './results.js';
import { BASELINE_IN_FLIGHT, BASELINE_REQUESTS, BASELINE_WARMUP } from './settings.js';

const BASE_TIMESTAMP = new Date().toISOString();

/** A body shaped like a delivery's: {id, type, payload, occurred_at, received_at}. */
function webhookLikeBody(id: string, n: number): string {
  return JSON.stringify({
    id,
    type: 'bench.webhook',
    payload: payloadFor(n),
    occurred_at: BASE_TIMESTAMP,
    received_at: BASE_TIMESTAMP,
  });
}

/** The reference: the receiver driven by a bare undici Pool with signed, webhook-shaped POSTs. */
export async function runBaseline(receiver: ReceiverProcess, name: string): Promise<Row> {
  const secret = randomBytes(32);
  const pool = new Pool(`http://127.0.0.1:${receiver.port}`, {
    connections: BASELINE_IN_FLIGHT,
    pipelining: 1,
    keepAliveTimeout: 30_000,
  });
  const run = async (pathname: string, count: number, prefix: string) => {
    let next = 0;
    let errors = 0;
    const sender = async () => {
      while (next < count) {
        const n = next++;
        // Ids shaped like the server's, so the receiver's work is the same.
        const id = `${prefix}${String(n).padStart(20, '0')}`;
        const body = webhookLikeBody(id, n);
        const timestamp = String(Math.floor(Date.now() / 1000));
        const signature = 'v1,' + createHmac('sha256', secret).update(`${id}.${timestamp}.${body}`).digest('base64');
        const response = await pool.request({
          path: pathname,
          method: 'POST',
          body,
          headers: {
            'content-type': 'application/json',
            'webhook-id': id,
            'webhook-timestamp': timestamp,
            'webhook-signature': signature,
          },
        });
        await response.body.dump();
        if (response.statusCode !== 200) errors++;
      }
    };
    const started = now();
    await Promise.all(Array.from({ length: BASELINE_IN_FLIGHT }, sender));
    return { seconds: (now() - started) / 1000, errors };
  };
  try {
    const tag = name.replace(/\W+/g, '-');
    await run(`/baseline/${tag}-warmup`, BASELINE_WARMUP, 'evt_warm');
    const before = {
      receiver: procStat(receiver.proc.pid!)?.cpu ?? 0,
      bench: process.cpuUsage(),
      machine: machineBusySeconds(),
    };
    const { seconds, errors } = await run(`/baseline/${tag}`, BASELINE_REQUESTS, 'evt_base');
    const benchUsage = process.cpuUsage(before.bench);
    const counts = (await receiver.counts(`/baseline/${tag}`))[`/baseline/${tag}`];
    const ok = errors === 0 && counts?.distinct === BASELINE_REQUESTS;
    const cpu = emptySplit();
    cpu.receiver = (procStat(receiver.proc.pid!)?.cpu ?? 0) - before.receiver;
    cpu.bench = (benchUsage.user + benchUsage.system) / 1e6;
    cpu.elsewhere = Math.max(0, machineBusySeconds() - before.machine - cpu.receiver - cpu.bench);
    const row: Row = {
      scenario: name,
      deliveries: BASELINE_REQUESTS,
      seconds,
      perSecond: BASELINE_REQUESTS / seconds,
      cpu,
      ok,
      notes: [
        `bare undici Pool, ${BASELINE_IN_FLIGHT} in flight; the "bench" CPU is the client's${ok ? '' : `; ${errors} non-200 answers, ${counts?.distinct ?? 0} distinct ids received`}`,
      ],
    };
    if (!ok) failures.push(`${name}: ${errors} errors, ${counts?.distinct ?? 0} of ${BASELINE_REQUESTS} received`);
    recordRow(row);
    return row;
  } finally {
    await pool.close();
  }
}
