import type { RequestContext } from './context.js';

/**
 * Counts requests in progress, so a drain knows when it is done. Each request is counted once and
 * ended once, whichever path ends it first (its answer, an answer before its body, the client
 * going away mid-body): the flag on the context makes a second end do nothing. A request whose end
 * was lost would make every later drain wait out SHUTDOWN_TIMEOUT_MS.
 */
export class RequestTracker {
  inFlight = 0;
  draining = false;
  private idleWaiters: Array<() => void> = [];

  begin(ctx: RequestContext): void {
    ctx.counted = true;
    this.inFlight++;
  }

  end(ctx: RequestContext): void {
    if (!ctx.counted) return;
    ctx.counted = false;
    if (--this.inFlight === 0) for (const wake of this.idleWaiters.splice(0)) wake();
  }

  idle(): Promise<void> {
    return this.inFlight === 0 ? Promise.resolve() : new Promise((resolve) => this.idleWaiters.push(resolve));
  }
}
