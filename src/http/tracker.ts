import type { RequestContext, RequestCounter } from './context.js';

/**
 * Counts requests in progress, so a drain knows when it is done. The router begins the count when
 * a request arrives; only endRequest (src/http/context.ts) ends it, once: when its answer is
 * written, whatever path wrote it, or when the client goes away before a handler took it.
 */
export class RequestTracker implements RequestCounter {
  inFlight = 0;
  draining = false;
  private idleWaiters: Array<() => void> = [];

  begin(ctx: RequestContext): void {
    ctx.counter = this;
    this.inFlight++;
  }

  /** Through endRequest only. */
  end(ctx: RequestContext): void {
    if (ctx.counter !== this) return;
    ctx.counter = null;
    if (--this.inFlight === 0) for (const wake of this.idleWaiters.splice(0)) wake();
  }

  idle(): Promise<void> {
    return this.inFlight === 0 ? Promise.resolve() : new Promise((resolve) => this.idleWaiters.push(resolve));
  }
}
