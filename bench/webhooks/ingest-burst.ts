import type { Pool } from 'undici';
import { now } from './clock.js';
import { payloadFor } from './payload.js';
import { BATCH_SIZE, PRODUCERS } from './settings.js';

export interface Ingested {
  /** event id → when its (batch) answer came back. */
  answeredAt: Map<string, number>;
  startedAt: number;
  firstAnswer: number;
  lastAnswer: number;
  rejected: number;
}

/**
 * POSTs `total` events in batches of BATCH_SIZE from PRODUCERS concurrent producers; with
 * `orderingKeys`, the n-th event has ordering_key `k{n % orderingKeys}`.
 */
export async function ingestBurst(
  pool: Pool,
  key: string,
  type: string,
  total: number,
  orderingKeys?: number,
): Promise<Ingested> {
  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
  const batches = Math.ceil(total / BATCH_SIZE);
  const result: Ingested = {
    answeredAt: new Map(),
    startedAt: now(),
    firstAnswer: Infinity,
    lastAnswer: 0,
    rejected: 0,
  };
  let next = 0;
  const producer = async () => {
    while (next < batches) {
      const batch = next++;
      const size = Math.min(BATCH_SIZE, total - batch * BATCH_SIZE);
      const body = JSON.stringify({
        events: Array.from({ length: size }, (_, i) => {
          const n = batch * BATCH_SIZE + i;
          return orderingKeys
            ? { type, payload: payloadFor(n), ordering_key: `k${n % orderingKeys}` }
            : { type, payload: payloadFor(n) };
        }),
      });
      const response = await pool.request({ path: '/v1/events/batch', method: 'POST', headers, body });
      const text = await response.body.text();
      const at = now();
      if (response.statusCode !== 200)
        throw new Error(`POST /v1/events/batch answered ${response.statusCode}: ${text.slice(0, 300)}`);
      result.firstAnswer = Math.min(result.firstAnswer, at);
      result.lastAnswer = Math.max(result.lastAnswer, at);
      for (const item of (JSON.parse(text) as { results: Array<{ status: string; id?: string }> }).results) {
        if (item.status === 'accepted' && item.id) result.answeredAt.set(item.id, at);
        else result.rejected++;
      }
    }
  };
  await Promise.all(Array.from({ length: PRODUCERS }, producer));
  return result;
}
