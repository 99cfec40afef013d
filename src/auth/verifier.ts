import { hash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { Sql } from '../db/connect.js';
import { log } from '../log.js';
import { keyCacheLookupChannel, keyVerifiedChannel, type KeyCacheLookup, type KeyVerified } from './channels.js';
import type { HashPool } from './hash-pool.js';
import { parseApiKey, scopeMask, type KeyEnv } from './keys.js';
import { KidLookup } from './kid-lookup.js';

/** Who a verified key speaks for. Built once per key and shared by every request using it. */
export interface Principal {
  keyId: string;
  kid: string;
  orgId: string;
  scopes: number;
}

interface KeyRecord {
  principal: Principal;
  /** The env the key was issued for: `zt_live_…` and `zt_test_…` of one kid are different keys. */
  env: KeyEnv;
  secretHash: string;
}

/** Postgres channel on which a key's kid is announced when the key is revoked or created. */
export const KEY_CHANGED_CHANNEL = 'api_key_changed';

// Wrong secrets are remembered so that replaying one costs a cache look-up, not a hash.
const REJECTED_TTL_MS = 60_000;
// Unknown kids are remembered briefly, so repeating one is refused without a query; a NOTIFY on
// key creation clears the entry early, and the TTL bounds how long a key created on another node
// can be refused when that NOTIFY is missed (the listening connection reconnecting).
const UNKNOWN_KID_TTL_MS = 2_000;
// Distinct kids waiting for their look-up in one process; past it, 503 (src/auth/kid-lookup.ts).
const KID_LOOKUP_QUEUE_LIMIT = 10_000;
// Fallback for a missed NOTIFY (e.g. while the listening connection reconnects). The poll looks
// 5 s further back than the last revocation it saw, to cover clock skew between nodes.
const REVOCATION_POLL_MS = 1_000;

// One-shot crypto.hash (Node ≥ 20.12): no Hash object per request, measured ~2× cheaper here.
function digestOf(key: string): string {
  return hash('sha256', key, 'base64');
}

/**
 * API key verification for one HTTP process.
 *
 * Hot path: sha256(key) → LRU of verified principals (synchronous). Miss: parse the key
 * (malformed → reject), look the kid up (unknown, revoked or issued for the other env → reject
 * without hashing; look-ups share statements, src/auth/kid-lookup.ts), then argon2id on the hash
 * pool. Concurrent misses for the same key share one verification. The verified cache is keyed
 * by the digest of the whole key, env included.
 */
export class ApiKeyVerifier {
  private readonly verified: LRUCache<string, Principal>;
  private readonly rejected = new LRUCache<string, true>({ max: 10_000, ttl: REJECTED_TTL_MS });
  private readonly recordsByKid = new LRUCache<string, KeyRecord>({ max: 10_000 });
  // Apart from recordsByKid, so a flood of random kids cannot evict the records of real keys.
  private readonly unknownKids = new LRUCache<string, true>({ max: 10_000, ttl: UNKNOWN_KID_TTL_MS });
  private readonly lookup: KidLookup;
  /** Bumped by every announced key change: a look-up that raced one caches no negative answer. */
  private keyChanges = 0;
  private readonly inFlight = new Map<string, Promise<Principal | null>>();
  private pollTimer: NodeJS.Timeout | null = null;
  private lastRevocationSeen = new Date();
  private unlisten: (() => Promise<void>) | null = null;

  constructor(
    private readonly sql: Sql,
    private readonly hashPool: HashPool,
    cacheSize: number,
  ) {
    this.verified = new LRUCache({ max: cacheSize });
    this.lookup = new KidLookup(sql, KID_LOOKUP_QUEUE_LIMIT);
  }

  /** Subscribes to key changes on every node sharing this database. */
  async start(): Promise<void> {
    const listener = await this.sql.listen(KEY_CHANGED_CHANNEL, (kid) => this.forgetKid(kid));
    this.unlisten = listener.unlisten;
    this.pollTimer = setInterval(() => void this.pollRevocations(), REVOCATION_POLL_MS);
    this.pollTimer.unref();
  }

  async stop(): Promise<void> {
    if (this.pollTimer) clearInterval(this.pollTimer);
    await this.unlisten?.().catch(() => {});
  }

  /** A cached principal, or undefined when the key must be verified (or is not a key at all). */
  cached(key: string): Principal | undefined {
    if (!keyCacheLookupChannel.hasSubscribers) return this.verified.get(digestOf(key));
    const started = performance.now();
    const principal = this.verified.get(digestOf(key));
    keyCacheLookupChannel.publish({
      hit: principal !== undefined,
      seconds: (performance.now() - started) / 1000,
    } satisfies KeyCacheLookup);
    return principal;
  }

  /**
   * True when an uncached key can be refused (401) without waiting for anything: malformed, a kid
   * looked up and not found moments ago, a kid whose key was issued for the other env, or a
   * wrong secret already hashed. The router asks before reading a request's body.
   */
  refusesAtOnce(key: string): boolean {
    const parsed = parseApiKey(key);
    if (!parsed) return true;
    if (this.unknownKids.has(parsed.kid)) return true;
    const record = this.recordsByKid.get(parsed.kid);
    if (record !== undefined && record.env !== parsed.env) return true;
    return this.rejected.has(digestOf(key));
  }

  /** Full verification; null means 401. Throws ApiError 503 when the hash pool is saturated. */
  verify(key: string): Promise<Principal | null> {
    const digest = digestOf(key);
    const hit = this.verified.get(digest);
    if (hit) return Promise.resolve(hit);
    if (this.rejected.has(digest)) return Promise.resolve(null);
    let pending = this.inFlight.get(digest);
    if (!pending) {
      pending = this.verifyUncached(key, digest).finally(() => this.inFlight.delete(digest));
      this.inFlight.set(digest, pending);
    }
    // Timed per caller: requests that share one verification each waited for it.
    if (!keyVerifiedChannel.hasSubscribers) return pending;
    const started = performance.now();
    return pending.finally(() =>
      keyVerifiedChannel.publish({ seconds: (performance.now() - started) / 1000 } satisfies KeyVerified),
    );
  }

  private async verifyUncached(key: string, digest: string): Promise<Principal | null> {
    const parsed = parseApiKey(key);
    if (!parsed) return null;
    const record = await this.recordFor(parsed.kid);
    // The env is part of the key: a live key presented as zt_test_ (or the reverse) is no key,
    // refused like an unknown kid, before any hashing.
    if (!record || record.env !== parsed.env) return null;
    const ok = await this.hashPool.verify(record.secretHash, parsed.secret);
    if (!ok) {
      this.rejected.set(digest, true);
      return null;
    }
    // A change to this kid was announced while we hashed: its revocation, or simply the NOTIFY
    // of its own creation arriving late. Ask the database again rather than guess.
    const current = this.recordsByKid.get(parsed.kid) === record ? record : await this.recordFor(parsed.kid);
    if (!current || current.principal.keyId !== record.principal.keyId) return null;
    this.verified.set(digest, current.principal);
    return current.principal;
  }

  private async recordFor(kid: string): Promise<KeyRecord | null> {
    const known = this.recordsByKid.get(kid);
    if (known !== undefined) return known;
    if (this.unknownKids.has(kid)) return null;
    const changesBefore = this.keyChanges;
    const row = await this.lookup.find(kid);
    if (!row) {
      if (this.keyChanges === changesBefore) this.unknownKids.set(kid, true);
      return null;
    }
    const record: KeyRecord = {
      principal: { keyId: row.id, kid, orgId: row.org_id, scopes: scopeMask(row.scopes) },
      env: row.env,
      secretHash: row.secret_hash,
    };
    this.recordsByKid.set(kid, record);
    return record;
  }

  /** Drops everything cached about a kid (revoked, or newly created after a negative look-up). */
  forgetKid(kid: string): void {
    this.keyChanges++;
    this.recordsByKid.delete(kid);
    this.unknownKids.delete(kid);
    for (const [digest, principal] of this.verified.entries()) {
      if (principal.kid === kid) this.verified.delete(digest);
    }
  }

  private async pollRevocations(): Promise<void> {
    try {
      const since = this.lastRevocationSeen;
      const rows = await this.sql`
        select kid, revoked_at from api_keys
        where revoked_at > ${since}::timestamptz - interval '5 seconds' order by revoked_at`;
      for (const row of rows) {
        this.forgetKid(row.kid);
        if (row.revoked_at > this.lastRevocationSeen) this.lastRevocationSeen = row.revoked_at;
      }
    } catch (error) {
      log.warn({ err: (error as Error).message }, 'revocation poll failed');
    }
  }
}
