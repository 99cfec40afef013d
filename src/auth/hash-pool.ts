import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { unavailable } from '../errors.js';

const WORKER_FILE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../workers/argon2-verify.js');

/**
 * argon2id verification (~24 ms each here) on dedicated threads. The queue is bounded: when it is
 * full, a verification is refused at once (503), so a flood of wrong keys costs at most
 * `threads` cores and never an unbounded backlog.
 */
export class HashPool {
  private readonly pool: Piscina;
  constructor(
    threads: number,
    private readonly queueLimit: number,
  ) {
    this.pool = new Piscina({ filename: WORKER_FILE, minThreads: threads, maxThreads: threads, idleTimeout: 60_000 });
  }

  verify(hash: string, secret: string): Promise<boolean> {
    if (this.pool.queueSize >= this.queueLimit) {
      return Promise.reject(
        unavailable('Too many API key verifications in progress; retry shortly.', 1, 'auth_overloaded'),
      );
    }
    return this.pool.run({ hash, secret }) as Promise<boolean>;
  }

  close(): Promise<void> {
    return this.pool.destroy();
  }
}
