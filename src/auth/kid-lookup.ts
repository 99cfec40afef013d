import type { Sql } from '../db/connect.js';
import { unavailable } from '../errors.js';
import type { KeyEnv } from './keys.js';

/** A live (not revoked) key as stored in api_keys. */
export interface KeyRow {
  id: string;
  kid: string;
  org_id: string;
  env: KeyEnv;
  scopes: string[];
  secret_hash: string;
}

interface Waiter {
  resolve(row: KeyRow | null): void;
  reject(error: unknown): void;
}

// One statement answers this many kids; a flood larger than that takes a few statements in turn.
const KIDS_PER_QUERY = 1_000;

/**
 * Looks kids up in api_keys with at most one statement in flight per process: the kids asked for
 * while a statement runs wait and go together in the next one (`kid = any(...)`, one index probe
 * each). An uncached key costs a look-up before anything proves it belongs to anyone, so a flood
 * of random kids is unauthenticated traffic; without this each took its own statement and its own
 * turn in the shared pool's queue, where ingest's dedup flushes and inbox reads wait too. Now such
 * a flood holds one connection of the pool at a time, whatever its rate, and the kids waiting are
 * bounded: past `maxWaiting` distinct kids a look-up is refused at once with 503.
 */
export class KidLookup {
  private waiting = new Map<string, Waiter[]>();
  private running = false;

  constructor(
    private readonly sql: Sql,
    private readonly maxWaiting: number,
  ) {}

  find(kid: string): Promise<KeyRow | null> {
    return new Promise((resolve, reject) => {
      let waiters = this.waiting.get(kid);
      if (waiters === undefined) {
        if (this.waiting.size >= this.maxWaiting) {
          reject(unavailable('Too many API key look-ups in progress; retry shortly.', 1, 'auth_overloaded'));
          return;
        }
        waiters = [];
        this.waiting.set(kid, waiters);
      }
      waiters.push({ resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.waiting.size > 0) {
        const batch = new Map<string, Waiter[]>();
        for (const [kid, waiters] of this.waiting) {
          batch.set(kid, waiters);
          this.waiting.delete(kid);
          if (batch.size === KIDS_PER_QUERY) break;
        }
        await this.answer(batch);
      }
    } finally {
      this.running = false;
    }
  }

  private async answer(batch: Map<string, Waiter[]>): Promise<void> {
    let rows: KeyRow[];
    try {
      rows = await this.sql<KeyRow[]>`
        select id, kid, org_id, env, scopes, secret_hash from api_keys
        where kid = any(${[...batch.keys()]}::text[]) and revoked_at is null`;
    } catch (error) {
      for (const waiters of batch.values()) for (const waiter of waiters) waiter.reject(error);
      return;
    }
    for (const row of rows) {
      const waiters = batch.get(row.kid);
      if (waiters === undefined) continue;
      batch.delete(row.kid);
      for (const waiter of waiters) waiter.resolve(row);
    }
    for (const waiters of batch.values()) for (const waiter of waiters) waiter.resolve(null);
  }
}
