import { Pool, request } from 'undici';
import { ADMIN_TOKEN } from './server.js';

export interface ApiResponse<T = any> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
}

/**
 * One HTTP call; JSON bodies are serialised, JSON answers parsed (text kept for odd cases).
 * undici's `request`, not `fetch`: the same keep-alive connections at a third of the CPU per call
 * (fetch's WHATWG streams and Headers cost ~0.9-1.4 ms a call against ~0.35-0.45 ms, measured
 * against the real server), in a suite that is CPU-bound (docs/PERFORMANCE.md "Test suite time").
 */
export async function call<T = any>(
  base: string,
  method: string,
  path: string,
  options: {
    body?: unknown;
    raw?: string | Buffer;
    headers?: Record<string, string>;
    key?: string;
    admin?: boolean;
  } = {},
): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.key) headers.authorization = `Bearer ${options.key}`;
  if (options.admin) headers.authorization = `Bearer ${ADMIN_TOKEN}`;
  let body: string | Buffer | undefined = options.raw;
  if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers['content-type'] ??= 'application/json';
  }
  const response = await request(base + path, { method: method as 'GET', headers, body });
  const text = await response.body.text();
  let parsed: any = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  return { status: response.statusCode, headers: headersOf(response.headers), body: parsed, text };
}

/** A `Headers` of an answer's header object, as fetch would have given (repeated headers kept). */
function headersOf(raw: Record<string, string | string[] | undefined>): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(raw)) {
    if (value === undefined) continue;
    for (const one of Array.isArray(value) ? value : [value]) headers.append(name, one);
  }
  return headers;
}

/** A new org with one key (all scopes unless given) through the admin API. */
export async function createOrgWithKey(
  base: string,
  options: { name?: string; scopes?: string[]; rate_limit_per_sec?: number; burst?: number } = {},
) {
  const org = await call(base, 'POST', '/v1/admin/orgs', {
    admin: true,
    body: {
      name: options.name ?? 'test org',
      rate_limit_per_sec: options.rate_limit_per_sec ?? 1_000_000,
      burst: options.burst ?? 1_000_000,
    },
  });
  if (org.status !== 201) throw new Error(`create org: ${org.status} ${org.text}`);
  const key = await call(base, 'POST', `/v1/admin/orgs/${org.body.id}/keys`, {
    admin: true,
    body: options.scopes ? { scopes: options.scopes } : {},
  });
  if (key.status !== 201) throw new Error(`create key: ${key.status} ${key.text}`);
  return { orgId: org.body.id as string, key: key.body.key as string, keyId: key.body.id as string };
}

export function sendEvent(base: string, key: string, event: unknown, headers?: Record<string, string>) {
  return call(base, 'POST', '/v1/events', { key, body: event, headers });
}

/** A well-formed key whose kid exists nowhere: refused with 401 without hashing. */
export const UNKNOWN_API_KEY = 'zt_test_nosuchkid_' + 'x'.repeat(43);

/** The secret part of `zt_<env>_<kid>_<secret>`; base64url, so it may itself contain "_". */
export function keySecret(key: string): string {
  return key.split('_').slice(3).join('_');
}

/**
 * One request on a connection of its own, so successive calls land on different HTTP workers of
 * a node (SO_REUSEPORT spreads connections, not requests).
 */
export async function callOnNewConnection(url: string, method: string, urlPath: string, key?: string, body?: unknown) {
  const pool = new Pool(url, { connections: 1 });
  try {
    const response = await pool.request({
      path: urlPath,
      method: method as 'GET',
      body: body === undefined ? undefined : JSON.stringify(body),
      headers: {
        ...(key ? { authorization: `Bearer ${key}` } : {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
    });
    const text = await response.body.text();
    return {
      status: response.statusCode,
      headers: response.headers as Record<string, string>,
      body: text ? JSON.parse(text) : null,
      text,
    };
  } finally {
    await pool.close();
  }
}

/** An org that a producer sends to, and the ids the server accepted for it. */
export interface ProducedOrg {
  key: string;
  accepted: Set<string>;
}

/**
 * One producer of a mixed load: `requests` requests spread over `orgs` in turn, every
 * `batchEvery`-th a batch of `batchSize`, the others single events (some with a dedup_id); records
 * every accepted id.
 * A single event may be refused with 503 under overload (nothing stored then); anything else fails.
 */
export async function produceMixed(
  base: (n: number) => string,
  orgs: ProducedOrg[],
  producer: number,
  shape: { requests: number; batchEvery: number; batchSize: number },
): Promise<void> {
  for (let n = 0; n < shape.requests; n++) {
    const org = orgs[(producer + n) % orgs.length]!;
    if (n % shape.batchEvery === 0) {
      const events = Array.from({ length: shape.batchSize }, (_, i) => ({
        type: 'load.batch',
        payload: { producer, n, i },
      }));
      const response = await call(base(n), 'POST', '/v1/events/batch', { key: org.key, body: { events } });
      if (response.status !== 200) throw new Error(`batch: ${response.status} ${response.text}`);
      for (const result of response.body.results) if (result.status === 'accepted') org.accepted.add(result.id);
    } else {
      // Every third single event carries a dedup_id: its flush takes the dedup path (one
      // statement that fences, claims and inserts) instead of the COPY.
      const dedup = n % 3 === 1 ? { dedup_id: `p${producer}-${n}` } : {};
      const response = await call(base(n), 'POST', '/v1/events', {
        key: org.key,
        body: { type: 'load.single', payload: { producer, n }, ...dedup },
      });
      if (response.status === 202) org.accepted.add(response.body.id);
      else if (response.status !== 503) throw new Error(`single: ${response.status} ${response.text}`);
    }
  }
}
