/**
 * The shared token bucket, as both stores compute it: the Redis Lua script (redis-store.ts) and
 * the in-memory table (bucket-table.ts) of the primary. A lease refills the bucket by the time elapsed
 * since its last change, then grants up to `want` whole tokens; a negative `want` hands unused
 * tokens back. A bucket nobody has touched is full (`burst` tokens).
 */
export interface BucketState {
  tokens: number;
  /** Milliseconds on the store's clock when `tokens` was last computed. */
  at: number;
}

export interface LeaseResult {
  /** Tokens handed out (negative: tokens taken back). */
  granted: number;
  /** Tokens left in the shared bucket after this lease (fractional). */
  tokens: number;
}

export function leaseFromBucket(
  state: BucketState | undefined,
  rate: number,
  burst: number,
  want: number,
  now: number,
): LeaseResult {
  let tokens = state === undefined ? burst : state.tokens + (now > state.at ? ((now - state.at) * rate) / 1000 : 0);
  if (tokens > burst) tokens = burst;
  let granted: number;
  if (want >= 0) {
    granted = Math.min(want, Math.floor(tokens));
    tokens -= granted;
  } else {
    granted = want;
    tokens = Math.min(burst, tokens - want);
  }
  return { granted, tokens };
}

/** Milliseconds until a bucket refills to `burst`: after that its state carries no information. */
export function msUntilFull(tokens: number, rate: number, burst: number): number {
  return Math.ceil(((burst - tokens) * 1000) / rate);
}
