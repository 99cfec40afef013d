import { TriggersApiError } from './errors.js';

export interface RetryOptions {
  /** Tries in all, the first included (default 10). */
  attempts?: number;
  /** Wait when the answer has no `Retry-After` (default 1000 ms). */
  defaultWaitMs?: number;
  /** Longest wait however long `Retry-After` says (default 60 000 ms). */
  maxWaitMs?: number;
  /** Called before each wait, e.g. to count or log retries. */
  onRetry?(error: TriggersApiError, waitMs: number, attempt: number): void;
}

/**
 * Runs `send` again after a 429 or a 503, waiting what the server's `Retry-After` asks. Both mean
 * nothing was stored, so a retry never duplicates. Anything else (other errors, network failures,
 * which may have been stored) is thrown at once: whether to resend is the caller's call, safe
 * when events carry a `dedup_id`.
 */
export async function retrying<T>(send: () => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const attempts = options.attempts ?? 10;
  const defaultWaitMs = options.defaultWaitMs ?? 1_000;
  const maxWaitMs = options.maxWaitMs ?? 60_000;
  for (let attempt = 1; ; attempt++) {
    try {
      return await send();
    } catch (error) {
      if (!(error instanceof TriggersApiError) || !error.retryable || attempt >= attempts) throw error;
      const waitMs = Math.min(
        maxWaitMs,
        error.retryAfterSeconds === null ? defaultWaitMs : error.retryAfterSeconds * 1_000,
      );
      options.onRetry?.(error, waitMs, attempt);
      await new Promise((resolve) => setTimeout(resolve, waitMs));
    }
  }
}
