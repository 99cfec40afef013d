import { MAX_FILTER_BYTES, MAX_FILTER_DEPTH } from './filter.js';

/** The `filter` field as the OpenAPI document shows it; `effect` says what a match does ("handed out", "delivered"). */
export function filterSchema(effect: string) {
  return {
    type: ['object', 'null'],
    // Any keys: typed clients get Record<string, unknown>, not an object that may hold nothing.
    additionalProperties: true,
    description: `Events must match it to be ${effect} (API.md §5, \`filter\`): dotted paths into the event (\`type\`, \`payload.amount\`) with a literal or operators \`$eq\`, \`$ne\`, \`$gt\`, \`$gte\`, \`$lt\`, \`$lte\`, \`$in\`, \`$nin\`, \`$exists\`, \`$prefix\`; \`$and\` / \`$or\` take lists of filters. Same-type comparisons only; a missing path matches only \`$exists: false\` and \`$ne\`. At most ${MAX_FILTER_BYTES} bytes serialized and ${MAX_FILTER_DEPTH} levels deep, else 422 naming \`filter\`.`,
  };
}
