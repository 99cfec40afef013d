import { ADMIN_TOKEN } from './server.js';

export interface ApiResponse<T = any> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
}

/** One HTTP call; JSON bodies are serialised, JSON answers parsed (text kept for odd cases). */
export async function call<T = any>(
  base: string,
  method: string,
  path: string,
  options: { body?: unknown; raw?: string | Buffer; headers?: Record<string, string>; key?: string; admin?: boolean } = {},
): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.key) headers.authorization = `Bearer ${options.key}`;
  if (options.admin) headers.authorization = `Bearer ${ADMIN_TOKEN}`;
  let body: string | Buffer | undefined = options.raw;
  if (options.body !== undefined) {
    body = JSON.stringify(options.body);
    headers['content-type'] ??= 'application/json';
  }
  const response = await fetch(base + path, { method, headers, body });
  const text = await response.text();
  let parsed: any = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  return { status: response.status, headers: response.headers, body: parsed, text };
}

/** A new org with one key (all scopes unless given) through the admin API. */
export async function createOrgWithKey(base: string, options: { name?: string; scopes?: string[]; rate_limit_per_sec?: number; burst?: number } = {}) {
  const org = await call(base, 'POST', '/v1/admin/orgs', {
    admin: true,
    body: { name: options.name ?? 'test org', rate_limit_per_sec: options.rate_limit_per_sec ?? 1_000_000, burst: options.burst ?? 1_000_000 },
  });
  if (org.status !== 201) throw new Error(`create org: ${org.status} ${org.text}`);
  const key = await call(base, 'POST', `/v1/admin/orgs/${org.body.id}/keys`, { admin: true, body: options.scopes ? { scopes: options.scopes } : {} });
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
