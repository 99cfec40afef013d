import { verifySync, hash } from '@node-rs/argon2';
import { LRUCache } from 'lru-cache';
import { Bench } from 'tinybench';
import { HashPool } from '../../src/auth/hash-pool.js';
import { generateApiKey } from '../../src/auth/keys.js';
import { ApiKeyVerifier, type Principal } from '../../src/auth/verifier.js';
import type { Sql } from '../../src/db/connect.js';
import { runAndReport } from './report.js';

/** The auth cache hit (sha256 digest + LRU) against a plain Map look-up by key string. */
export async function authCacheBench(time: number) {
  const { key } = generateApiKey('live');
  const principal: Principal = { keyId: 'k', kid: 'kid', orgId: 'org', scopes: 7 };
  // cached() touches neither the database nor the pool: nulls stand in for them here.
  const verifier = new ApiKeyVerifier(null as unknown as Sql, null as unknown as HashPool, 10_000);
  const { hash: digest } = await import('node:crypto');
  (verifier as unknown as { verified: LRUCache<string, Principal> }).verified.set(
    digest('sha256', key, 'base64'),
    principal,
  );
  if (verifier.cached(key) !== principal) throw new Error('cache not primed');
  const plain = new Map([[key, principal]]);
  const bench = new Bench({ time });
  bench.add('Map.get(key)', () => {
    plain.get(key);
  });
  bench.add('verifier.cached(key)', () => {
    verifier.cached(key);
  });
  return runAndReport('auth cache hit', bench, {
    name: 'auth',
    baseline: 'Map.get(key)',
    candidates: ['verifier.cached(key)'],
  });
}

/** argon2id verify through the piscina pool against a direct synchronous call. */
export async function argon2Bench(time: number) {
  const { secret } = generateApiKey('live');
  const stored = await hash(secret);
  const pool = new HashPool(1, 1000);
  await pool.verify(stored, secret); // thread start-up is not part of the comparison
  const bench = new Bench({ time, iterations: 20 });
  bench.add('verifySync (main thread)', () => {
    verifySync(stored, secret);
  });
  bench.add('HashPool.verify (piscina)', async () => {
    await pool.verify(stored, secret);
  });
  try {
    return await runAndReport('argon2id verify', bench, {
      name: 'argon2',
      baseline: 'verifySync (main thread)',
      candidates: ['HashPool.verify (piscina)'],
    });
  } finally {
    await pool.close();
  }
}
