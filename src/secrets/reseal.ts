import type { Sql } from '../db/connect.js';
import {
  currentSecretsKeyId,
  endpointSecretContext,
  isSealed,
  openSecret,
  SecretUnavailableError,
  sealedConfigFields,
  sealedKeyId,
  sealSecret,
} from './sealed.js';

/**
 * `npm run secrets:rotate` (scripts/secrets-rotate.ts): every stored secret is brought under the
 * current SECRETS_KEY: opened with whichever configured key it names (or taken as it is when
 * clear) and sealed again. Without SECRETS_KEY it is opened and stored clear (turning encryption
 * off). docs/SECRETS.md has the procedure.
 *
 * Safe beside a running server and to run again:
 * - rows are read in batches by id, and each row is written by compare-and-set on the values read,
 *   so a rotate-secret (or a destination change) committed meanwhile is never overwritten: the
 *   row is read again and done over;
 * - a value already sealed under the current key is left as it is, so a second run writes nothing;
 * - the clear secret never changes, only its stored form: delivery processes open the new form
 *   on their next read of the row (src/delivery/signing-keys.ts), and signatures stay the same.
 */

export interface ResealOptions {
  batchSize?: number;
  /** Called after each batch with the running totals (the script prints progress). */
  onBatch?: (report: ResealReport) => void;
  /** A test's seam: runs between reading a row and writing it (to change the row meanwhile). */
  beforeWrite?: (endpointId: string) => Promise<void>;
}

export interface ResealFailure {
  endpoint_id: string;
  /** `secret`, `previous_secret`, or `config.<path>`. */
  field: string;
  /** Why it did not open: names a key id, never a key or a secret. */
  reason: string;
}

export interface ResealReport {
  /** The key values are sealed under now, or null: stored clear. */
  key_id: string | null;
  rows_scanned: number;
  rows_updated: number;
  values_resealed: number;
  /** Stored previous secrets past their 24 h overlap that did not open: never used again, so removed. */
  expired_previous_dropped: number;
  /** Whether destination configs (the `config` column) were looked at: false before that column exists. */
  configs_checked: boolean;
  failed: ResealFailure[];
}

interface EndpointSecretsRow {
  id: string;
  org_id: string;
  secret: string;
  previous_secret: string | null;
  previous_expired: boolean;
  type: string | null;
  config: unknown;
}

const DEFAULT_BATCH = 500;
// A row that keeps changing under us (a rotate-secret loop) is left for the next run after this many tries.
const TRIES_PER_ROW = 5;

export async function resealStoredSecrets(sql: Sql, options: ResealOptions = {}): Promise<ResealReport> {
  const batchSize = options.batchSize ?? DEFAULT_BATCH;
  const columns = await endpointColumns(sql);
  const report: ResealReport = {
    key_id: currentSecretsKeyId(),
    rows_scanned: 0,
    rows_updated: 0,
    values_resealed: 0,
    expired_previous_dropped: 0,
    configs_checked: columns.has('config'),
    failed: [],
  };
  let after = '00000000-0000-0000-0000-000000000000';
  for (;;) {
    const batch = await readRows(sql, columns, after, batchSize);
    if (batch.length === 0) break;
    for (const row of batch) await resealRow(sql, columns, row, report, options.beforeWrite);
    report.rows_scanned += batch.length;
    after = batch[batch.length - 1]!.id;
    options.onBatch?.(report);
    if (batch.length < batchSize) break;
  }
  return report;
}

async function endpointColumns(sql: Sql): Promise<Set<string>> {
  const rows = await sql<{ column_name: string }[]>`
    select column_name from information_schema.columns
    where table_schema = current_schema() and table_name = 'webhook_endpoints' and column_name in ('config', 'kind')`;
  return new Set(rows.map((row) => row.column_name));
}

// The `config` and `kind` columns come with /v1/destinations (sql/013): read only where they exist.
function selected(sql: Sql, columns: Set<string>) {
  const config = columns.has('config') ? sql`config` : sql`null::jsonb as config`;
  const type = columns.has('kind') ? sql`kind::text as type` : sql`null::text as type`;
  return sql`id::text as id, org_id::text as org_id, secret, previous_secret,
    coalesce(previous_secret_expires_at <= now(), true) as previous_expired, ${type}, ${config}`;
}

async function readRows(sql: Sql, columns: Set<string>, after: string, limit: number): Promise<EndpointSecretsRow[]> {
  return sql<EndpointSecretsRow[]>`
    select ${selected(sql, columns)} from webhook_endpoints where id > ${after}::uuid order by id limit ${limit}`;
}

async function readRow(sql: Sql, columns: Set<string>, row: EndpointSecretsRow): Promise<EndpointSecretsRow | null> {
  const [fresh] = await sql<EndpointSecretsRow[]>`
    select ${selected(sql, columns)} from webhook_endpoints where id = ${row.id}::uuid and org_id = ${row.org_id}::uuid`;
  return fresh ?? null;
}

/** What a row's stored values become; `null` fields are unchanged. */
interface RowChange {
  secret: string | null;
  previousSecret: string | null | undefined;
  config: unknown;
  configChanged: boolean;
  resealed: number;
  droppedPrevious: boolean;
  failed: ResealFailure[];
}

async function resealRow(
  sql: Sql,
  columns: Set<string>,
  first: EndpointSecretsRow,
  report: ResealReport,
  beforeWrite: ResealOptions['beforeWrite'],
): Promise<void> {
  let row: EndpointSecretsRow | null = first;
  for (let attempt = 1; row !== null && attempt <= TRIES_PER_ROW; attempt++) {
    const change = plan(row);
    const changed = change.secret !== null || change.previousSecret !== undefined || change.configChanged;
    if (!changed) {
      report.failed.push(...change.failed);
      return;
    }
    await beforeWrite?.(row.id);
    const written = await writeRow(sql, columns, row, change);
    if (written) {
      report.rows_updated++;
      report.values_resealed += change.resealed;
      if (change.droppedPrevious) report.expired_previous_dropped++;
      report.failed.push(...change.failed);
      return;
    }
    // Changed since read (a rotate-secret, a PATCH): plan again from what is there now.
    row = await readRow(sql, columns, row);
  }
  if (row !== null) {
    report.failed.push({
      endpoint_id: first.id,
      field: 'row',
      reason: 'kept changing while being re-sealed; run again',
    });
  }
}

function plan(row: EndpointSecretsRow): RowChange {
  const context = endpointSecretContext(row.org_id, row.id);
  const change: RowChange = {
    secret: null,
    previousSecret: undefined,
    config: row.config,
    configChanged: false,
    resealed: 0,
    droppedPrevious: false,
    failed: [],
  };
  const resealed = (stored: string, field: string): string | null | SecretUnavailableError => {
    if (!needsReseal(stored)) return null;
    try {
      return sealSecret(openSecret(stored, context), context);
    } catch (error) {
      if (error instanceof SecretUnavailableError) {
        change.failed.push({ endpoint_id: row.id, field, reason: error.message });
        return error;
      }
      throw error;
    }
  };
  const secret = resealed(row.secret, 'secret');
  if (typeof secret === 'string') {
    change.secret = secret;
    change.resealed++;
  }
  if (row.previous_secret !== null) {
    const previous = row.previous_expired
      ? resealedQuietly(row.previous_secret, context)
      : resealed(row.previous_secret, 'previous_secret');
    if (typeof previous === 'string') {
      change.previousSecret = previous;
      change.resealed++;
    } else if (row.previous_expired && previous instanceof SecretUnavailableError) {
      // Past its overlap it signs nothing any more: a key lost for it costs nothing, and the
      // value no longer holds back dropping that key from SECRETS_KEY_PREVIOUS.
      change.previousSecret = null;
      change.droppedPrevious = true;
    }
  }
  if (row.config !== null && typeof row.config === 'object') {
    const fields = new Set(sealedConfigFields(row.type ?? 'webhook'));
    const config = structuredClone(row.config);
    const count = resealConfig(config, fields, 'config', resealed);
    if (count > 0) {
      change.config = config;
      change.configChanged = true;
      change.resealed += count;
    }
  }
  return change;
}

function resealedQuietly(stored: string, context: string): string | null | SecretUnavailableError {
  if (!needsReseal(stored)) return null;
  try {
    return sealSecret(openSecret(stored, context), context);
  } catch (error) {
    if (error instanceof SecretUnavailableError) return error;
    throw error;
  }
}

/**
 * Re-seals, in place, every string in `value` that is sealed or sits under one of `fields`;
 * returns how many it changed.
 */
function resealConfig(
  value: unknown,
  fields: ReadonlySet<string>,
  path: string,
  reseal: (stored: string, field: string) => string | null | SecretUnavailableError,
  underField = false,
): number {
  let changed = 0;
  const visit = (item: unknown, itemPath: string, under: boolean, put: (next: string) => void) => {
    if (typeof item === 'string') {
      if (!under && !isSealed(item)) return;
      const next = reseal(item, itemPath);
      if (typeof next !== 'string') return;
      put(next);
      changed++;
    } else if (item !== null && typeof item === 'object') {
      changed += resealConfig(item, fields, itemPath, reseal, under);
    }
  };
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      visit(value[i], `${path}[${i}]`, underField, (next) => {
        value[i] = next;
      });
    }
  } else if (value !== null && typeof value === 'object') {
    const object = value as Record<string, unknown>;
    for (const [key, item] of Object.entries(object)) {
      visit(item, `${path}.${key}`, underField || fields.has(key), (next) => {
        object[key] = next;
      });
    }
  }
  return changed;
}

/** Not yet in the form the current configuration stores: clear under a key, or under another key. */
function needsReseal(stored: string): boolean {
  const current = currentSecretsKeyId();
  if (current === null) return isSealed(stored);
  return sealedKeyId(stored) !== current;
}

/** Compare-and-set on every value read: false when the row changed (or went) meanwhile. */
async function writeRow(sql: Sql, columns: Set<string>, row: EndpointSecretsRow, change: RowChange): Promise<boolean> {
  const secret = change.secret ?? row.secret;
  const previous = change.previousSecret === undefined ? row.previous_secret : change.previousSecret;
  const configSet = change.configChanged ? sql`, config = ${sql.json(change.config as never)}` : sql``;
  const configSame = columns.has('config')
    ? row.config === null
      ? sql`and config is null`
      : sql`and config = ${sql.json(row.config as never)}`
    : sql``;
  const updated = await sql`
    update webhook_endpoints set secret = ${secret}, previous_secret = ${previous} ${configSet}
    where id = ${row.id}::uuid and org_id = ${row.org_id}::uuid
      and secret = ${row.secret} and previous_secret is not distinct from ${row.previous_secret} ${configSame}`;
  return updated.count === 1;
}
