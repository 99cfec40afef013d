/**
 * Long-poll `receive` (API.md §4b, `wait_s`): the requests of this HTTP process that wait for an
 * org's events to commit. A waiting request holds no Postgres connection: it holds a Waiter, and
 * the process wakes it when a flush of the org commits, here or in another process
 * (src/groups/wake.ts). How many may wait is bounded per org and per process, so one org cannot
 * hold every connection's worth of memory and timers.
 */

export interface Waiter {
  /**
   * Resolves true at the first wake-up since the previous call (at once if one came meanwhile),
   * false after `ms` without one.
   */
  next(ms: number): Promise<boolean>;
  /** Stops waiting; must be called once the request is done. */
  release(): void;
}

class OrgWaiter implements Waiter {
  woken = false;
  private resolve: ((woken: boolean) => void) | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly owner: GroupWaiters,
    readonly orgId: string,
  ) {}

  next(ms: number): Promise<boolean> {
    if (this.woken) {
      this.woken = false;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      this.resolve = resolve;
      this.timer = setTimeout(() => this.settle(false), ms);
    });
  }

  wake(): void {
    if (this.resolve) this.settle(true);
    else this.woken = true;
  }

  private settle(woken: boolean): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const resolve = this.resolve;
    this.resolve = null;
    this.woken = false;
    resolve?.(woken);
  }

  release(): void {
    this.settle(false);
    this.owner.remove(this);
  }
}

export interface WaiterLimits {
  perOrg: number;
  total: number;
}

export class GroupWaiters {
  private readonly byOrg = new Map<string, Set<OrgWaiter>>();
  private count = 0;

  /**
   * `interest(orgId, true)` when the first request of an org starts waiting here, `false` when
   * the last one stops: the relay tells other processes which orgs' commits to forward.
   */
  constructor(
    private readonly limits: WaiterLimits,
    private readonly interest: (orgId: string, waiting: boolean) => void = () => {},
  ) {}

  get waiting(): number {
    return this.count;
  }

  /** A waiter for the org, or null when the org (or the process) has as many as allowed. */
  register(orgId: string): Waiter | null {
    let set = this.byOrg.get(orgId);
    if (this.count >= this.limits.total || (set !== undefined && set.size >= this.limits.perOrg)) return null;
    if (!set) {
      set = new Set();
      this.byOrg.set(orgId, set);
      this.interest(orgId, true);
    }
    const waiter = new OrgWaiter(this, orgId);
    set.add(waiter);
    this.count++;
    return waiter;
  }

  /** @internal */
  remove(waiter: OrgWaiter): void {
    const set = this.byOrg.get(waiter.orgId);
    if (!set || !set.delete(waiter)) return;
    this.count--;
    if (set.size === 0) {
      this.byOrg.delete(waiter.orgId);
      this.interest(waiter.orgId, false);
    }
  }

  /** Events of these orgs committed. */
  wake(orgIds: Iterable<string>): void {
    for (const orgId of orgIds) {
      const set = this.byOrg.get(orgId);
      if (set) for (const waiter of set) waiter.wake();
    }
  }

  /** Orgs with a waiting request here. */
  orgs(): string[] {
    return [...this.byOrg.keys()];
  }

  /** Wakes everyone (a drain: answers go out now, with what there is). */
  wakeAll(): void {
    for (const set of this.byOrg.values()) for (const waiter of set) waiter.wake();
  }
}
