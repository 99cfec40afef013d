import { call, createOrgWithKey } from '../../test/helpers/api.js';

/** A new org (rate limit 10 000 000/s, so the limiter never shapes a scenario) and its key, verified by every HTTP worker. */
export async function createOrg(base: string, name: string): Promise<string> {
  const { key } = await createOrgWithKey(base, { name, rate_limit_per_sec: 10_000_000, burst: 10_000_000 });
  // Every HTTP worker verifies a new key once (argon2, by design slow); do that before measuring.
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      const warm = await call(base, 'GET', '/v1/webhooks', { key });
      if (warm.status !== 200) throw new Error(`GET /v1/webhooks with the new key: ${warm.status} ${warm.text}`);
    }),
  );
  return key;
}

/** `controls`: delivery controls for the endpoint (e.g. `{ ordering: 'key' }`). */
export async function createEndpoint(
  base: string,
  key: string,
  url: string,
  controls: Record<string, unknown> = {},
): Promise<string> {
  const created = await call(base, 'POST', '/v1/webhooks', {
    key,
    body: { url, event_types: [], description: 'bench', ...controls },
  });
  if (created.status !== 201) throw new Error(`create endpoint ${url}: ${created.status} ${created.text}`);
  return created.body.id as string;
}

export async function deleteEndpoint(base: string, key: string, id: string): Promise<void> {
  await call(base, 'DELETE', `/v1/webhooks/${id}`, { key });
}
