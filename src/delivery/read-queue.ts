/**
 * Streams waiting for one of the delivery process's few concurrent reads, served org by org in
 * turn, oldest first within an org. First come, first served let a wake-up of an org with a
 * thousand endpoints put a thousand reads ahead of another org's one stream: with four reads at
 * a time, hundreds of milliseconds of waiting for its events. In turn, that stream waits for at
 * most one read per other org with reads waiting.
 */
export interface Reader {
  readonly orgId: string;
}

export class ReadQueue<T extends Reader> {
  /** Org → its streams waiting; the Map's order is the orgs' turn. */
  private readonly byOrg = new Map<string, Set<T>>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  add(stream: T): void {
    let waiting = this.byOrg.get(stream.orgId);
    if (waiting === undefined) {
      waiting = new Set();
      this.byOrg.set(stream.orgId, waiting);
    }
    if (waiting.has(stream)) return;
    waiting.add(stream);
    this.count++;
  }

  delete(stream: T): void {
    const waiting = this.byOrg.get(stream.orgId);
    if (waiting === undefined || !waiting.delete(stream)) return;
    this.count--;
    if (waiting.size === 0) this.byOrg.delete(stream.orgId);
  }

  /** The next stream to read: the first org's oldest, and that org goes to the back of the turn. */
  take(): T | undefined {
    for (const [orgId, waiting] of this.byOrg) {
      const [stream] = waiting;
      waiting.delete(stream!);
      this.count--;
      this.byOrg.delete(orgId);
      if (waiting.size > 0) this.byOrg.set(orgId, waiting);
      return stream;
    }
    return undefined;
  }
}
