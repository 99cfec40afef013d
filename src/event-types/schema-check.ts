import type { FieldError } from '../errors.js';
import { isPlainObject } from '../ingest/validate.js';
import { patternProblem } from './safe-pattern.js';

/**
 * What a schema must be to be registered, beyond valid JSON Schema 2020-12 (compile.ts checks
 * that): bounded, so that one org's schema cannot hurt the process that checks every org's events
 * (API.md §3b). Each limit is in docs/EVENT-TYPES.md.
 */

export const MAX_SCHEMA_BYTES = 64 * 1024;
/** JSON nesting of the schema document: ajv's compiler recurses through it. */
export const MAX_SCHEMA_DEPTH = 32;
/**
 * The schema expanded as a tree (every `$ref` replaced by what it points to), counting each
 * subschema and each `enum` entry once: a bound on the checks one place in a payload can cost,
 * and on the code ajv generates (it inlines references).
 */
export const MAX_SCHEMA_WEIGHT = 1000;
/**
 * The checks that can apply to one place in a payload (one value): every subschema that reaches
 * it, through properties, items, allOf, anyOf, $ref… An enum value counts a quarter (ajv compares
 * scalars with ===). A payload of 256 KiB holds tens of thousands of values, and each costs about
 * this many checks at most: measured in test/event-types-hostile.test.ts.
 */
export const MAX_CHECKS_PER_VALUE = 64;

/** Keywords whose value is one subschema. */
const ONE_SCHEMA = [
  'items',
  'contains',
  'additionalProperties',
  'propertyNames',
  'not',
  'if',
  'then',
  'else',
  'unevaluatedItems',
  'unevaluatedProperties',
  'additionalItems',
];
/** Keywords whose value is a list of subschemas. */
const SCHEMA_LIST = ['allOf', 'anyOf', 'oneOf', 'prefixItems'];
/** Keywords whose value maps names to subschemas. */
const SCHEMA_MAP = ['properties', 'patternProperties', '$defs', 'definitions', 'dependentSchemas'];
const SCALAR_TYPES = new Set(['string', 'number', 'integer', 'boolean', 'null']);

function escapePointer(name: string): string {
  return name.replaceAll('~', '~0').replaceAll('/', '~1');
}

/** The subschemas of one schema object, with their pointers relative to it. */
function subschemas(node: Record<string, unknown>): Array<[string, unknown]> {
  const found: Array<[string, unknown]> = [];
  for (const keyword of ONE_SCHEMA) if (keyword in node) found.push(['/' + keyword, node[keyword]]);
  for (const keyword of SCHEMA_LIST) {
    const list = node[keyword];
    if (Array.isArray(list)) list.forEach((item, i) => found.push([`/${keyword}/${i}`, item]));
  }
  for (const keyword of SCHEMA_MAP) {
    const map = node[keyword];
    if (isPlainObject(map))
      for (const name of Object.keys(map)) found.push([`/${keyword}/${escapePointer(name)}`, map[name]]);
  }
  return found;
}

function depthProblem(root: unknown): boolean {
  const stack: Array<[unknown, number]> = [[root, 1]];
  while (stack.length > 0) {
    const [value, depth] = stack.pop()!;
    if (depth > MAX_SCHEMA_DEPTH) return true;
    const children = Array.isArray(value) ? value : Object.values(value as object);
    for (const child of children) if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
  }
  return false;
}

/**
 * Every problem of a schema that is refused before ajv sees it; empty when none. Fields are
 * `schema` for the whole, or a JSON pointer into the request body (`/schema/properties/a/pattern`).
 */
export function schemaProblems(schema: unknown): FieldError[] {
  if (!isPlainObject(schema)) return [{ field: 'schema', message: 'must be a JSON Schema (a JSON object)' }];
  if (depthProblem(schema))
    return [{ field: 'schema', message: `must be nested at most ${MAX_SCHEMA_DEPTH} levels deep` }];
  if (Buffer.byteLength(JSON.stringify(schema)) > MAX_SCHEMA_BYTES) {
    return [{ field: 'schema', message: `must be at most ${MAX_SCHEMA_BYTES} bytes serialised` }];
  }
  const problems: FieldError[] = [];
  const anchors = new Map<string, object>();
  const stack: Array<[unknown, string]> = [[schema, '']];
  while (stack.length > 0) {
    const [node, at] = stack.pop()!;
    if (!isPlainObject(node)) continue; // booleans are schemas too; anything else ajv refuses
    checkKeywords(node, '/schema' + at, at === '', problems);
    if (typeof node.$anchor === 'string') anchors.set(node.$anchor, node);
    for (const [pointer, child] of subschemas(node)) stack.push([child, at + pointer]);
  }
  if (problems.length > 0) return problems;
  const weight = expandedWeight(schema, anchors, problems);
  if (problems.length === 0 && weight > MAX_SCHEMA_WEIGHT) {
    problems.push({
      field: 'schema',
      message: `must expand (every $ref replaced by its target) to at most ${MAX_SCHEMA_WEIGHT} subschemas and enum values`,
    });
  }
  if (problems.length === 0 && checksPerValue([schema], root(schema, anchors)) > MAX_CHECKS_PER_VALUE) {
    problems.push({
      field: 'schema',
      message: `must apply at most ${MAX_CHECKS_PER_VALUE} subschemas (an enum value counting a quarter) to any one value of a payload`,
    });
  }
  return problems;
}

/** MAX_CHECKS_PER_VALUE's measure of a schema that schemaProblems accepted. */
export function schemaChecksPerValue(schema: object): number {
  const anchors = new Map<string, object>();
  const stack: unknown[] = [schema];
  while (stack.length > 0) {
    const node = stack.pop();
    if (!isPlainObject(node)) continue;
    if (typeof node.$anchor === 'string') anchors.set(node.$anchor, node);
    for (const [, child] of subschemas(node)) stack.push(child);
  }
  return checksPerValue([schema], root(schema as Record<string, unknown>, anchors));
}

/** Keywords that apply their subschemas to the same value as the schema they are in. */
const IN_PLACE_ONE = ['not', 'if', 'then', 'else'];
const IN_PLACE_LIST = ['allOf', 'anyOf', 'oneOf'];
/** Keywords that apply their subschemas to the items of an array (prefixItems taken with them: an over-estimate). */
const ITEM_ONE = ['items', 'contains', 'unevaluatedItems', 'additionalItems'];

type RefResolver = (ref: string) => unknown;

function root(schema: Record<string, unknown>, anchors: Map<string, object>): RefResolver {
  return (ref) => resolveRef(schema, anchors, ref);
}

/**
 * The most checks any one value of a payload can meet: `schemas` apply to one place; with what
 * they apply in place (allOf, anyOf, $ref…), they are the checks there; then the same for each
 * property name they name (plus every patternProperties and additionalProperties, which may
 * apply to any name: an upper bound) and for array items. Runs after the expanded weight is
 * bounded and recursion refused, so it ends, and visits each subschema of the expanded tree about once.
 */
function checksPerValue(schemas: unknown[], resolve: RefResolver): number {
  const here: Record<string, unknown>[] = [];
  const pending = [...schemas];
  while (pending.length > 0) {
    const node = pending.pop();
    if (!isPlainObject(node)) continue;
    here.push(node);
    if (here.length > MAX_SCHEMA_WEIGHT) return MAX_SCHEMA_WEIGHT;
    for (const keyword of IN_PLACE_ONE) if (keyword in node) pending.push(node[keyword]);
    for (const keyword of IN_PLACE_LIST)
      if (Array.isArray(node[keyword])) pending.push(...(node[keyword] as unknown[]));
    if (isPlainObject(node.dependentSchemas)) pending.push(...Object.values(node.dependentSchemas));
    if (typeof node.$ref === 'string') pending.push(resolve(node.$ref));
  }
  let checks = 0;
  for (const node of here) checks += 1 + (Array.isArray(node.enum) ? node.enum.length / 4 : 0);
  if (checks > MAX_CHECKS_PER_VALUE) return checks;

  const byName = new Map<string, unknown[]>();
  const anyName: unknown[] = [];
  const items: unknown[] = [];
  const names: unknown[] = [];
  for (const node of here) {
    if (isPlainObject(node.properties)) {
      for (const [name, child] of Object.entries(node.properties)) {
        const list = byName.get(name);
        if (list) list.push(child);
        else byName.set(name, [child]);
      }
    }
    if (isPlainObject(node.patternProperties)) anyName.push(...Object.values(node.patternProperties));
    for (const keyword of ['additionalProperties', 'unevaluatedProperties'])
      if (keyword in node) anyName.push(node[keyword]);
    for (const keyword of ITEM_ONE) if (keyword in node) items.push(node[keyword]);
    if (Array.isArray(node.prefixItems)) items.push(...node.prefixItems);
    if ('propertyNames' in node) names.push(node.propertyNames);
  }
  // A named property meets its own subschemas and every name-independent one (patternProperties,
  // additionalProperties). Their checks add up at most, so the name-independent ones are measured
  // once, not once per name: per name, three levels of 300 properties each with a
  // patternProperties were 300^3 walks, a stall of the PUT's process.
  const anyNameChecks = anyName.length === 0 ? 0 : checksPerValue(anyName, resolve);
  let most = Math.max(checks, anyNameChecks);
  for (const list of byName.values()) {
    if (most > MAX_CHECKS_PER_VALUE) break;
    most = Math.max(most, checksPerValue(list, resolve) + anyNameChecks);
  }
  for (const children of [items, names]) {
    if (children.length === 0 || most > MAX_CHECKS_PER_VALUE) continue;
    most = Math.max(most, checksPerValue(children, resolve));
  }
  return most;
}

function checkKeywords(node: Record<string, unknown>, at: string, isRoot: boolean, problems: FieldError[]): void {
  if ('$ref' in node && (typeof node.$ref !== 'string' || !node.$ref.startsWith('#'))) {
    problems.push({ field: at + '/$ref', message: 'must refer to a place inside this schema (start with "#")' });
  }
  for (const keyword of ['$dynamicRef', '$recursiveRef']) {
    if (keyword in node)
      problems.push({ field: `${at}/${keyword}`, message: 'is not supported: use $ref to a place inside this schema' });
  }
  if (!isRoot && '$id' in node)
    problems.push({ field: at + '/$id', message: 'is allowed only at the root of the schema' });
  if (typeof node.pattern === 'string') {
    const problem = regexProblem(node.pattern);
    if (problem) problems.push({ field: at + '/pattern', message: problem });
  }
  if (isPlainObject(node.patternProperties)) {
    for (const key of Object.keys(node.patternProperties)) {
      const problem = regexProblem(key);
      if (problem) problems.push({ field: `${at}/patternProperties/${escapePointer(key)}`, message: problem });
    }
  }
  // ajv compares items of other types pairwise: quadratic in the array's length (tens of
  // thousands of items in a 256 KiB payload). Scalar items it compares through a hash, in one pass.
  if (node.uniqueItems === true && !hasScalarItems(node)) {
    problems.push({
      field: at + '/uniqueItems',
      message:
        'needs "items" with a "type" of scalars only (string, number, integer, boolean, null): unique objects or arrays cost quadratic time',
    });
  }
}

function hasScalarItems(node: Record<string, unknown>): boolean {
  const items = node.items;
  if (!isPlainObject(items)) return false;
  const types = Array.isArray(items.type) ? items.type : [items.type];
  return types.length > 0 && types.every((type) => typeof type === 'string' && SCALAR_TYPES.has(type));
}

function regexProblem(source: string): string | null {
  try {
    new RegExp(source, 'u');
  } catch {
    return 'must be a valid regular expression (ECMA-262, with the u flag)';
  }
  return patternProblem(source);
}

/**
 * The weight of the schema expanded as a tree: each subschema 1, each enum value 1, each `$ref`
 * the weight of its target. Memoised per schema object; a `$ref` that leads back to a schema being
 * expanded (recursion) is a problem, since its expansion has no end.
 */
function expandedWeight(root: Record<string, unknown>, anchors: Map<string, object>, problems: FieldError[]): number {
  const memo = new Map<object, number>();
  const expanding = new Set<object>();
  const weigh = (node: unknown, at: string): number => {
    if (!isPlainObject(node)) return 1;
    const known = memo.get(node);
    if (known !== undefined) return known;
    if (expanding.has(node)) {
      problems.push({
        field: at,
        message: 'must not lead back to a schema that contains it (recursive schemas are not accepted)',
      });
      return MAX_SCHEMA_WEIGHT + 1;
    }
    expanding.add(node);
    let weight = 1 + (Array.isArray(node.enum) ? node.enum.length : 0);
    if (typeof node.$ref === 'string') {
      const target = resolveRef(root, anchors, node.$ref);
      if (target !== undefined) weight += weigh(target, at + '/$ref');
    }
    for (const [pointer, child] of subschemas(node)) {
      if (weight > MAX_SCHEMA_WEIGHT || problems.length > 0) break;
      weight += weigh(child, at + pointer);
    }
    expanding.delete(node);
    const capped = Math.min(weight, MAX_SCHEMA_WEIGHT + 1);
    memo.set(node, capped);
    return capped;
  };
  return weigh(root, '/schema');
}

/** The value a `#…` reference names (a JSON pointer or an anchor), or undefined (ajv reports it). */
function resolveRef(root: Record<string, unknown>, anchors: Map<string, object>, ref: string): unknown {
  let fragment: string;
  try {
    fragment = decodeURIComponent(ref.slice(1));
  } catch {
    return undefined;
  }
  if (fragment === '') return root;
  if (!fragment.startsWith('/')) return anchors.get(fragment);
  let value: unknown = root;
  for (const raw of fragment.slice(1).split('/')) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<string, unknown>)[raw.replaceAll('~1', '/').replaceAll('~0', '~')];
  }
  return value;
}
