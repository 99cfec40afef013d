import Ajv2020Module, { type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import type { FieldError } from '../errors.js';
import { cpuMsSince } from './compile-budget.js';

// Both packages are CommonJS with a default export: under NodeNext it arrives as `.default`.
const Ajv2020 = Ajv2020Module.default;
const addFormats = addFormatsModule.default;

/** Failures reported for one event: ajv collects them all (allErrors), the answer names the first ones. */
export const MAX_REPORTED_FAILURES = 20;

/**
 * Strings longer than this are not matched against a `pattern` (they fail it, saying why): what
 * the static check of safe-pattern.ts lets through is at worst polynomial in the subject's length.
 */
export const MAX_PATTERN_SUBJECT = 1024;
/** The same for `format` (URLs run longer than patterns' usual subjects). */
export const MAX_FORMAT_SUBJECT = 2048;

/**
 * ajv's regexp engine: patterns compiled with the `u` flag, never run on a subject longer than
 * MAX_PATTERN_SUBJECT. ajv keys its pattern cache by toString(): without it every pattern was
 * "[object Object]", and every schema got the first pattern ajv ever compiled.
 */
function boundedRegExp(pattern: string, flags: string) {
  const regexp = new RegExp(pattern, flags);
  return {
    test: (subject: string) => subject.length <= MAX_PATTERN_SUBJECT && regexp.test(subject),
    toString: () => regexp.toString(),
  };
}
boundedRegExp.code = 'boundedRegExp';

/**
 * Two ajv per process. Every payload meets the quick one (allErrors off: it stops at the first
 * failure); only a payload that failed meets the full one, which collects every failure. ajv
 * cannot bound allErrors itself: a 150 KiB array failing 60 checks per item made 2.4 million
 * error objects in 7.5 s. So the full report is made only when the payload's values times the
 * schema's checks per value stay within FULL_REPORT_CHECKS; otherwise the first failure is the
 * answer. `addUsedSchema: false`: a schema's `$id` is not registered in the shared instance, so
 * two orgs' schemas with the same `$id` never meet (only `#…` references are accepted,
 * schema-check.ts). `strict: false`: unknown keywords and formats are annotations, as JSON Schema
 * 2020-12 says, not errors. Compiled schemas leave ajv's own cache when the registry's LRU
 * evicts them (forget), so ajv holds no more than the registry does.
 */
function newAjv(allErrors: boolean) {
  const ajv = new Ajv2020({
    allErrors,
    strict: false,
    addUsedSchema: false,
    validateFormats: true,
    logger: false,
    code: { regExp: boundedRegExp },
  });
  addFormats(ajv);
  for (const [name, format] of Object.entries(ajv.formats)) ajv.addFormat(name, boundedFormat(format));
  return ajv;
}

/**
 * String formats are checked only on strings of at most MAX_FORMAT_SUBJECT characters (longer
 * ones fail the format, saying why). ajv-formats' regexes are not linear: `email` took 461 ms on
 * one 100 KB string here, `uri-reference` 183 ms, `regex` (which compiles the string) 258 ms.
 */
function boundedFormat(format: unknown): Parameters<InstanceType<typeof Ajv2020>['addFormat']>[1] {
  const bounded = (check: (subject: string) => boolean) => (subject: string) =>
    subject.length <= MAX_FORMAT_SUBJECT && check(subject);
  if (format instanceof RegExp) return bounded((subject) => format.test(subject));
  if (typeof format === 'function') return bounded(format as (subject: string) => boolean);
  if (
    typeof format === 'object' &&
    format !== null &&
    (format as { type?: string }).type !== 'number' &&
    !(format as { async?: boolean }).async
  ) {
    const definition = format as { validate: RegExp | ((subject: string) => boolean) };
    const validate = definition.validate;
    return {
      ...definition,
      validate: bounded(validate instanceof RegExp ? (subject) => validate.test(subject) : validate),
    } as never;
  }
  return format as never;
}
type Ajv = ReturnType<typeof newAjv>;

/**
 * ajv keeps every pattern it compiled in its instance's scope, never dropped by removeSchema: a
 * stream of schemas with new patterns would grow it without end. After this many compiles the
 * process starts a fresh pair; schemas compiled by the old pair keep working, and the old pair
 * goes when the last of them is evicted.
 */
const COMPILES_PER_AJV = 2000;
let quickAjv = newAjv(false);
let fullAjv = newAjv(true);
let compiles = 0;

function renewIfWorn(): void {
  if (++compiles < COMPILES_PER_AJV) return;
  compiles = 0;
  quickAjv = newAjv(false);
  fullAjv = newAjv(true);
}

/** At most this many checks are run to list every failure of a payload (about 20 ms of error objects). */
export const FULL_REPORT_CHECKS = 8192;

/** A payload checked against one schema: null when it validates, else its failures (at most MAX_REPORTED_FAILURES). */
export type PayloadCheck = (payload: unknown) => FieldError[] | null;

export interface CompiledSchema {
  check: PayloadCheck;
  /** Drops it from the caches of the ajv that compiled it. */
  forget(): void;
}

/** Problems ajv finds in a schema: against the 2020-12 meta-schema, then compiling it. Empty when it compiles. */
export function compileProblems(schema: object): FieldError[] {
  if (!quickAjv.validateSchema(schema)) {
    return (quickAjv.errors ?? []).slice(0, MAX_REPORTED_FAILURES).map((error) => ({
      field: '/schema' + error.instancePath,
      message: error.message ?? 'is not valid JSON Schema 2020-12',
    }));
  }
  try {
    compileSchema(schema, 1).forget();
    return [];
  } catch (error) {
    return [{ field: 'schema', message: String((error as Error).message).slice(0, 300) }];
  }
}

/**
 * The compile of a full validator, which happens on a payload's first failure: `allowed` says
 * whether it may happen now (else the first failure is the answer), `compiled` hears how long it
 * took. The registry charges it to the org's compile budget (compile-budget.ts).
 */
export interface FullCompilePolicy {
  allowed(): boolean;
  compiled(ms: number): void;
}

const ALWAYS: FullCompilePolicy = { allowed: () => true, compiled: () => {} };

/**
 * Compiles a schema that compileProblems accepted (when it was registered). `checksPerValue` is
 * its bound from schema-check.ts. The full validator is compiled on the first failure only.
 */
export function compileSchema(
  schema: object,
  checksPerValue: number,
  fullCompile: FullCompilePolicy = ALWAYS,
): CompiledSchema {
  renewIfWorn();
  const quickOwner: Ajv = quickAjv;
  const fullOwner: Ajv = fullAjv;
  const quick = quickOwner.compile(schema);
  const fullReportValues = Math.floor(FULL_REPORT_CHECKS / Math.max(1, checksPerValue));
  let full: ValidateFunction | null = null;
  return {
    check(payload) {
      if (quick(payload)) return null;
      if (countValues(payload, fullReportValues) > fullReportValues) return failures(quick, payload);
      if (full === null) {
        if (!fullCompile.allowed()) return failures(quick, payload);
        const started = process.cpuUsage();
        full = fullOwner.compile(schema);
        fullCompile.compiled(cpuMsSince(started));
      }
      full(payload);
      return failures(full, payload);
    },
    forget() {
      quickOwner.removeSchema(schema);
      fullOwner.removeSchema(schema);
    },
  };
}

/** The values in a document (containers and scalars), counted until past `limit`. */
function countValues(root: unknown, limit: number): number {
  let count = 1;
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const value = stack.pop() as object;
    const children = Array.isArray(value) ? value : Object.values(value);
    count += children.length;
    if (count > limit) return count;
    for (const child of children) if (typeof child === 'object' && child !== null) stack.push(child);
  }
  return count;
}

/** ajv's errors as the API's details: `field` a JSON pointer into the event (API.md §3b). */
function failures(validate: ValidateFunction, payload: unknown): FieldError[] {
  const errors = validate.errors ?? [];
  const details: FieldError[] = [];
  for (let i = 0; i < errors.length && details.length < MAX_REPORTED_FAILURES; i++)
    details.push(detailOf(errors[i]!, payload));
  return details;
}

function detailOf(error: ErrorObject, payload: unknown): FieldError {
  const at = '/payload' + error.instancePath;
  const params = error.params as Record<string, unknown>;
  if (error.keyword === 'required')
    return { field: at + '/' + escapePointer(String(params.missingProperty)), message: 'is required' };
  if (error.keyword === 'additionalProperties' || error.keyword === 'unevaluatedProperties') {
    const name = String(params.additionalProperty ?? params.unevaluatedProperty);
    return { field: at + '/' + escapePointer(name), message: 'is not allowed' };
  }
  if (error.keyword === 'pattern' || error.keyword === 'format') {
    const [limit, what] =
      error.keyword === 'pattern'
        ? [MAX_PATTERN_SUBJECT, 'a pattern is matched against']
        : [MAX_FORMAT_SUBJECT, 'a format is checked on'];
    const value = valueAt(payload, error.instancePath);
    if (typeof value === 'string' && value.length > limit)
      return { field: at, message: `is longer than ${limit} characters, the most ${what}` };
  }
  return { field: at, message: error.message ?? 'is invalid' };
}

function escapePointer(name: string): string {
  return name.replaceAll('~', '~0').replaceAll('/', '~1');
}

/** The value at a JSON pointer (as ajv writes instancePath), or undefined. */
function valueAt(root: unknown, pointer: string): unknown {
  let value = root;
  if (pointer === '') return value;
  for (const raw of pointer.slice(1).split('/')) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<string, unknown>)[raw.replaceAll('~1', '/').replaceAll('~0', '~')];
  }
  return value;
}
