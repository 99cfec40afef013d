import assert from 'node:assert/strict';
import Ajv2020Module from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import type { ValidateFunction } from 'ajv';
import type { ApiResponse } from './api.js';

// CommonJS packages seen from ESM: the classes are on `default`.
const Ajv2020 = Ajv2020Module.default;
const addFormats = addFormatsModule.default;

type Json = Record<string, any>;
const DOCUMENT_ID = 'https://triggers.test/openapi.json';

/**
 * Holds the server's answers to its own OpenAPI document: the status must be documented for the
 * operation, the body must validate against the documented schema (JSON Schema 2020-12, with
 * formats), and every header the document marks required must be there and well-formed.
 *
 * Stricter than the document on one point: an object may not carry properties the document does
 * not list. The document leaves response objects open (clients must tolerate new fields); the
 * test holds the server to exactly what is written.
 */
export class OpenApiChecker {
  private readonly ajv = new Ajv2020({ strict: false, allErrors: true });
  private readonly validators = new Map<string, ValidateFunction>();
  /** Operations seen answering, as "METHOD /template STATUS", for coverage assertions. */
  readonly seen = new Set<string>();

  constructor(readonly document: Json) {
    addFormats(this.ajv);
    this.ajv.addSchema(closeObjects(structuredClone(document)) as Json, DOCUMENT_ID);
  }

  /** Checks one answer to `method pathTemplate` (e.g. `GET /v1/events/{id}`). */
  expectMatches(method: string, template: string, response: ApiResponse): void {
    const item = this.document.paths[template];
    assert.ok(item, `${template} is not in the document`);
    let operationKey = method.toLowerCase();
    const context = `${method} ${template} answered ${response.status} ${response.text.slice(0, 300)}`;
    if (item[operationKey] === undefined) {
      // A method the path does not have: 405 with the path's methods in Allow.
      assert.equal(response.status, 405, context);
      const methods = Object.keys(item).map((name) => name.toUpperCase());
      assert.deepEqual(response.headers.get('allow')!.split(', ').sort(), methods.sort(), context);
      operationKey = Object.keys(item)[0]!;
    }
    const pointer = ['paths', template, operationKey, 'responses', String(response.status)];
    const documented = item[operationKey].responses[String(response.status)];
    assert.ok(documented, `status not documented: ${context}`);
    this.seen.add(`${method} ${template} ${response.status}`);
    this.checkAnswer(documented, pointer, response, context);
  }

  /** An answer that belongs to no operation (an unknown path): the documented 404 error shape. */
  expectUnknownPathAnswer(response: ApiResponse): void {
    assert.equal(response.status, 404, response.text);
    this.checkHeaders(
      {
        'X-Request-Id': { $ref: '#/components/headers/X-Request-Id' },
        'X-Response-Time': { $ref: '#/components/headers/X-Response-Time' },
      },
      response,
      'unknown path',
    );
    this.validate(['components', 'schemas', 'NotFoundError'], response.body, 'unknown path');
  }

  private checkAnswer(documented: Json, pointer: string[], response: ApiResponse, context: string): void {
    this.checkHeaders(documented.headers ?? {}, response, context);
    const content = documented.content as Json | undefined;
    if (content === undefined) {
      assert.equal(response.text, '', `documented without a body: ${context}`);
      return;
    }
    const mediaType = (response.headers.get('content-type') ?? '').split(';')[0]!.trim();
    assert.ok(content[mediaType], `media type ${mediaType} not documented: ${context}`);
    const body = mediaType === 'application/json' ? JSON.parse(response.text) : response.text;
    this.validate([...pointer, 'content', mediaType, 'schema'], body, context);
    if (mediaType === 'application/json' && response.status >= 400 && body.error !== undefined) {
      assert.equal(body.error.request_id, response.headers.get('x-request-id'), context);
    }
  }

  private checkHeaders(headers: Json, response: ApiResponse, context: string): void {
    for (const [name, reference] of Object.entries(headers)) {
      const header = this.resolve(reference as Json);
      const value = response.headers.get(name);
      if (value === null) {
        assert.ok(!header.required, `required header ${name} missing: ${context}`);
        continue;
      }
      const typed = header.schema.type === 'integer' && /^-?\d+$/.test(value) ? Number(value) : value;
      const key = `header:${name}`;
      let validate = this.validators.get(key);
      if (!validate) this.validators.set(key, (validate = this.ajv.compile(header.schema)));
      assert.ok(validate(typed), `header ${name}: ${value} ${this.ajv.errorsText(validate.errors)}: ${context}`);
    }
  }

  /** `value` must be valid against the schema at `pointer` in the document (e.g. ['components', 'schemas', 'Event']). */
  validate(pointer: string[], value: unknown, context: string): void {
    const ref =
      DOCUMENT_ID +
      '#/' +
      pointer.map((part) => encodeURIComponent(part.replace(/~/g, '~0').replace(/\//g, '~1'))).join('/');
    let validate = this.validators.get(ref);
    if (!validate) this.validators.set(ref, (validate = this.ajv.compile({ $ref: ref })));
    assert.ok(validate(value), `${JSON.stringify(validate.errors)}: ${context}`);
  }

  private resolve(value: Json): Json {
    if (typeof value.$ref !== 'string') return value;
    let target: any = this.document;
    for (const part of value.$ref.slice(2).split('/')) target = target[part.replace(/~1/g, '/').replace(/~0/g, '~')];
    return target;
  }
}

/** Object schemas that list their properties get `unevaluatedProperties: false` unless they say otherwise. */
function closeObjects(node: unknown): unknown {
  if (Array.isArray(node)) {
    node.forEach(closeObjects);
  } else if (typeof node === 'object' && node !== null) {
    const schema = node as Json;
    if (
      schema.type === 'object' &&
      typeof schema.properties === 'object' &&
      !('additionalProperties' in schema) &&
      !('unevaluatedProperties' in schema)
    ) {
      schema.unevaluatedProperties = false;
    }
    for (const value of Object.values(schema)) closeObjects(value);
  }
  return node;
}
