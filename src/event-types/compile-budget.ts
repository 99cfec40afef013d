/**
 * How much compiling one org may make one process do. ajv compiles on the event loop (a schema
 * takes up to SCHEMA_COMPILE_LIMIT_MS), so an org that changes a schema in a loop, or cycles
 * through more types than the cache holds, could otherwise keep every process compiling for it.
 * Past its budget in a window, the org's events that need a compile are refused with 429 until
 * the window ends; other orgs, and the org's schemas already compiled, are not affected.
 */
export const COMPILE_BUDGET_MS = 500;

/**
 * Milliseconds of CPU the process spent since `start` (process.cpuUsage()), what a compile is
 * charged: compiles run synchronously on the event loop, so this is their cost, and unlike the
 * wall clock it does not grow when the machine is busy (at load 14 the wall clock of the same
 * compiles tripped the budget and answered 429 to an ordinary org: test/event-types-nodes).
 */
export function cpuMsSince(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
}
export const COMPILE_WINDOW_MS = 10_000;

export class CompileBudget {
  private readonly spent = new Map<string, { windowStart: number; ms: number }>();

  constructor(
    private readonly budgetMs = COMPILE_BUDGET_MS,
    private readonly windowMs = COMPILE_WINDOW_MS,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Milliseconds until the org may compile again; 0 when it may now. */
  waitMs(orgId: string): number {
    const entry = this.spent.get(orgId);
    if (entry === undefined) return 0;
    const elapsed = this.now() - entry.windowStart;
    if (elapsed >= this.windowMs) {
      this.spent.delete(orgId);
      return 0;
    }
    return entry.ms >= this.budgetMs ? this.windowMs - elapsed : 0;
  }

  /** Records a compile the org caused. */
  charge(orgId: string, ms: number): void {
    const now = this.now();
    const entry = this.spent.get(orgId);
    if (entry === undefined || now - entry.windowStart >= this.windowMs)
      this.spent.set(orgId, { windowStart: now, ms });
    else entry.ms += ms;
    // Orgs whose window ended are forgotten as they are met; keep the map from growing without end.
    if (this.spent.size > 10_000)
      for (const [id, old] of this.spent) if (now - old.windowStart >= this.windowMs) this.spent.delete(id);
  }
}
