/**
 * JSON Schema (2020-12, the dialect OpenAPI 3.1 uses) as the route tables declare it. A schema
 * that deserves a name in the document is wrapped with `named()`: wherever it is used, the
 * document builder emits it once under components.schemas and points to it with $ref.
 */
export type JsonSchema = NamedSchema | { [keyword: string]: unknown };

export class NamedSchema {
  constructor(
    readonly name: string,
    readonly schema: { [keyword: string]: unknown },
  ) {}
}

export const named = (name: string, schema: { [keyword: string]: unknown }): NamedSchema =>
  new NamedSchema(name, schema);

/** `type: [..., "null"]`: the field is always present, its value may be null. */
export function nullable(schema: { type: string; [keyword: string]: unknown }): { [keyword: string]: unknown } {
  return { ...schema, type: [schema.type, 'null'] };
}

/** Every id the server makes is a UUIDv7 (time-ordered), lower-case. */
export const uuid = (description?: string) => ({
  type: 'string',
  format: 'uuid',
  pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$',
  ...(description ? { description } : {}),
});
/** RFC 3339 UTC with milliseconds, as every time the server writes. */
export const timestamp = (description?: string) => ({
  type: 'string',
  format: 'date-time',
  pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z$',
  ...(description ? { description } : {}),
});
export const count = (description: string) => ({ type: 'integer', minimum: 0, description });
