import { LRUCache } from 'lru-cache';
import { ORG_CHANGED_CHANNEL } from '../ratelimit/org-limits.js';
import type { Sql } from '../db/connect.js';
import { ApiError, type FieldError } from '../errors.js';
import { log } from '../log.js';
import type { ValidEvent } from '../ingest/validate.js';
import type { CompiledSchema } from './compile.js';
import { CompileBudget, cpuMsSince } from './compile-budget.js';
import { schemaChecksPerValue } from './schema-check.js';
import { EVENT_TYPES_CHANGED_CHANNEL } from './service.js';

// A compile this long is worth a warning: the PUT's own compile limit (schema-pool.ts). Not the
// 80 ms a process's first compile takes while ajv warms up, which warned on every first event.
const SLOW_COMPILE_MS = 250;

/**
 * ajv loads when a process first learns of an org with event types (at start, or from a change),
 * in the background: processes that never see one never load it, and the first event of a type
 * does not wait for the import.
 */
let compiler: Promise<typeof import('./compile.js')> | null = null;
function loadCompiler(): Promise<typeof import('./compile.js')> {
  if (compiler === null) compiler = import('./compile.js');
  return compiler;
}

/** A registered schema as a process knows it before compiling it: enough to find it and name its version. */
interface SchemaRef {
  /** New on every create (sql/010_event_types.sql). */
  id: string;
  version: number;
}

/** What one process knows of an org that has event types or requires them. */
export interface OrgEventTypes {
  readonly orgId: string;
  require: boolean;
  types: Map<string, SchemaRef>;
}

// Fallback for a missed NOTIFY (the listening connection reconnecting): API.md §3b allows 2 s.
const POLL_MS = 1_000;

const REQUIRED: FieldError[] = [
  { field: 'type', message: 'has no registered schema, and this org requires one (require_event_types)' },
];

/**
 * Each HTTP process's view of the event types of every org that has some (API.md §3b), for the
 * ingest path. Most orgs have none: for them the check is one Map look-up that finds nothing.
 *
 * The view holds which (type, id, version) each org has, loaded at start and kept current by the
 * NOTIFY every change sends (service.ts, and the admin PATCH of require_event_types), with a poll
 * of orgs.event_types_revision as the fallback. Schemas are fetched and compiled on their first
 * event in this process and kept in an LRU keyed by (id, version): a version is immutable, so a
 * cached compile is never stale, and a change shows as a new key. The schema text is not kept in
 * memory besides ajv's compiled code; an evicted schema leaves ajv's caches too (compile.ts).
 */
export class EventTypeRegistry {
  private readonly orgs = new Map<string, OrgEventTypes>();
  /** The revision each org was last loaded at (also orgs without types any more). */
  private readonly revisions = new Map<string, string>();
  private readonly compiled: LRUCache<string, CompiledSchema>;
  private readonly compiling = new Map<string, Promise<{ ref: SchemaRef; schema: CompiledSchema } | null>>();
  private readonly reloads = new Map<string, Promise<void>>();
  private readonly reloadAgain = new Set<string>();
  private readonly budget = new CompileBudget();
  private pollTimer: NodeJS.Timeout | null = null;
  private polling = false;
  private unlisten: Array<() => Promise<void>> = [];

  constructor(
    private readonly sql: Sql,
    cacheSize: number,
  ) {
    this.compiled = new LRUCache({ max: cacheSize, dispose: (schema) => schema.forget() });
  }

  async start(): Promise<void> {
    for (const channel of [EVENT_TYPES_CHANGED_CHANNEL, ORG_CHANGED_CHANNEL]) {
      const listener = await this.sql.listen(channel, (orgId) => void this.reloadOrg(orgId));
      this.unlisten.push(listener.unlisten);
    }
    // The first load must succeed: a process that does not know the schemas must not take events.
    await this.loadAll();
    this.pollTimer = setInterval(() => void this.poll(), POLL_MS);
    this.pollTimer.unref();
  }

  async stop(): Promise<void> {
    if (this.pollTimer) clearInterval(this.pollTimer);
    await Promise.all(this.unlisten.map((unlisten) => unlisten().catch(() => {})));
  }

  /** The hot path's question: undefined for an org with no event types that does not require them. */
  of(orgId: string): OrgEventTypes | undefined {
    return this.orgs.get(orgId);
  }

  /**
   * Checks one event of an org that has event types: null when it may be stored (its
   * schemaVersion set when its type has a schema), else the failures for its 422. Synchronous
   * when the schema is compiled in this process already; a promise on its first event here.
   */
  check(org: OrgEventTypes, event: ValidEvent, payload: unknown): FieldError[] | null | Promise<FieldError[] | null> {
    const ref = org.types.get(event.type);
    if (ref === undefined) return org.require ? REQUIRED : null;
    const schema = this.compiled.get(ref.id + ':' + ref.version);
    if (schema !== undefined) {
      event.schemaVersion = ref.version;
      return schema.check(payload);
    }
    return this.compile(org, event.type, ref).then((found) => {
      if (found === null) return org.require ? REQUIRED : null;
      event.schemaVersion = found.ref.version;
      return found.schema.check(payload);
    });
  }

  /** This process changed the org's types (or its setting): learn it before answering. */
  changedHere(orgId: string): Promise<void> {
    return this.reloadOrg(orgId);
  }

  /** Fetches and compiles the type's current schema; null if the type has none any more. Concurrent first events share it. */
  private compile(
    org: OrgEventTypes,
    type: string,
    ref: SchemaRef,
  ): Promise<{ ref: SchemaRef; schema: CompiledSchema } | null> {
    const key = ref.id + ':' + ref.version;
    let pending = this.compiling.get(key);
    if (pending !== undefined) return pending;
    pending = (async () => {
      const [row] = await this
        .sql`select id, version, schema::text as schema from event_types where org_id = ${org.orgId} and type = ${type}`;
      if (!row) {
        if (org.types.get(type) === ref) org.types.delete(type);
        return null;
      }
      const current: SchemaRef = { id: row.id as string, version: row.version as number };
      const currentKey = current.id + ':' + current.version;
      let schema = this.compiled.get(currentKey);
      if (schema === undefined) {
        const { compileSchema } = await loadCompiler();
        const waitMs = this.budget.waitMs(org.orgId);
        if (waitMs > 0) {
          throw new ApiError(
            'rate_limited',
            "This org's schemas were compiled too often in this server process in the last seconds; retry shortly.",
            undefined,
            { 'Retry-After': String(Math.ceil(waitMs / 1000)) },
          );
        }
        const document = JSON.parse(row.schema as string) as object;
        const started = performance.now();
        const startedCpu = process.cpuUsage();
        const orgId = org.orgId;
        schema = compileSchema(document, schemaChecksPerValue(document), {
          allowed: () => this.budget.waitMs(orgId) === 0,
          compiled: (fullMs) => this.budget.charge(orgId, fullMs),
        });
        const ms = performance.now() - started;
        this.budget.charge(org.orgId, cpuMsSince(startedCpu));
        if (ms > SLOW_COMPILE_MS)
          log.warn(
            { org: org.orgId, type, version: current.version, ms: Math.round(ms) },
            'compiling an event type schema took long',
          );
        this.compiled.set(currentKey, schema);
      }
      // Newer than what this process knew (its NOTIFY still on the way): use it from now on.
      if (current.version > (org.types.get(type)?.version ?? 0)) org.types.set(type, current);
      return { ref: current, schema };
    })().finally(() => this.compiling.delete(key));
    this.compiling.set(key, pending);
    return pending;
  }

  /** Re-reads one org; one reload at a time per org, and one more if a change arrived meanwhile. */
  private reloadOrg(orgId: string): Promise<void> {
    const running = this.reloads.get(orgId);
    if (running !== undefined) {
      this.reloadAgain.add(orgId);
      return running;
    }
    const reload = this.loadOrg(orgId)
      .catch((error: Error) => log.warn({ err: error, org: orgId }, 'could not re-read event types; the poll retries'))
      .finally(() => {
        this.reloads.delete(orgId);
        if (this.reloadAgain.delete(orgId)) void this.reloadOrg(orgId);
      });
    this.reloads.set(orgId, reload);
    return reload;
  }

  private async loadOrg(orgId: string): Promise<void> {
    // The revision first: types read after it are at least as new, so a change between the two
    // reads is seen again by the next poll rather than missed.
    const [org] = await this
      .sql`select require_event_types, event_types_revision::text as revision from orgs where id = ${orgId}`;
    if (!org) {
      this.orgs.delete(orgId);
      this.revisions.delete(orgId);
      return;
    }
    const rows = await this.sql`select type, id, version from event_types where org_id = ${orgId}`;
    const types = new Map<string, SchemaRef>();
    for (const row of rows) types.set(row.type as string, { id: row.id as string, version: row.version as number });
    this.revisions.set(orgId, org.revision as string);
    const held = this.orgs.get(orgId);
    if (types.size === 0 && !org.require_event_types) {
      this.orgs.delete(orgId);
      return;
    }
    const next: OrgEventTypes = { orgId, require: org.require_event_types as boolean, types };
    this.orgs.set(orgId, next);
    if (types.size > 0) void loadCompiler();
    // A type registered or changed since this process last read the org is compiled now, not on
    // its next event: the change takes effect here within the contract's 2 s without that event
    // waiting for ajv's first import and the compile (1.0-2.0 s at load in CI when it did). Only
    // a change gets here (a NOTIFY, the revision poll, a PUT through this process), and the
    // compile is charged to the org's budget like any other (compile() refuses past it).
    for (const [type, ref] of types) {
      const before = held?.types.get(type);
      if (
        (before === undefined || before.id !== ref.id || before.version !== ref.version) &&
        !this.compiled.has(ref.id + ':' + ref.version)
      ) {
        this.compile(next, type, ref).catch(() => {});
      }
    }
  }

  /** Every org with event types or the setting, in two statements (a start must not cost a query per org). */
  private async loadAll(): Promise<void> {
    // Revisions first, as in loadOrg: types read after them are at least as new.
    const orgs = await this.sql`
      select id, require_event_types, event_types_revision::text as revision from orgs
      where require_event_types or event_types_revision > 0`;
    const rows = await this.sql`select org_id, type, id, version from event_types`;
    const typesByOrg = new Map<string, Map<string, SchemaRef>>();
    for (const row of rows) {
      let types = typesByOrg.get(row.org_id as string);
      if (!types) {
        types = new Map();
        typesByOrg.set(row.org_id as string, types);
      }
      types.set(row.type as string, { id: row.id as string, version: row.version as number });
    }
    for (const org of orgs) {
      const orgId = org.id as string;
      const types = typesByOrg.get(orgId) ?? new Map<string, SchemaRef>();
      this.revisions.set(orgId, org.revision as string);
      if (types.size > 0 || org.require_event_types)
        this.orgs.set(orgId, { orgId, require: org.require_event_types as boolean, types });
    }
    if (typesByOrg.size > 0) void loadCompiler();
  }

  /** Finds the orgs whose revision or setting differs from what this process holds, and reloads them. */
  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      const rows = await this.sql`
        select id, require_event_types, event_types_revision::text as revision from orgs
        where require_event_types or event_types_revision > 0`;
      const seen = new Set<string>();
      const stale: string[] = [];
      for (const row of rows) {
        const orgId = row.id as string;
        seen.add(orgId);
        const held = this.orgs.get(orgId);
        if (this.revisions.get(orgId) !== row.revision || (held?.require ?? false) !== row.require_event_types)
          stale.push(orgId);
      }
      for (const orgId of this.orgs.keys()) if (!seen.has(orgId)) stale.push(orgId);
      await Promise.all(stale.map((orgId) => this.reloadOrg(orgId)));
    } catch (error) {
      log.warn({ err: error }, 'could not poll event type changes');
    } finally {
      this.polling = false;
    }
  }
}
