import { createKey, createOrg, listOrgs } from '../admin/service.js';
import type { Config } from '../config.js';
import type { Sql } from '../db/connect.js';

/**
 * On the first start against a new, empty embedded database: an org "default" and one key with
 * every scope, printed once with a ready curl line. The one place a full key is ever printed.
 */
export async function createFirstKeyIfEmpty(sql: Sql, config: Config): Promise<void> {
  if ((await listOrgs(sql)).length > 0) return;
  const org = await createOrg(
    sql,
    { name: 'default' },
    { rateLimitPerSec: config.defaultRateLimitPerSec, burst: config.defaultBurst },
  );
  const key = await createKey(sql, org.id, { name: 'first key' });
  const host = config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host;
  const url = `http://${host}:${config.port}`;
  process.stdout.write(
    [
      '',
      'First start: created org "default" and an API key with all scopes.',
      'It is shown only this once; store it now:',
      '',
      `  ${key!.key}`,
      '',
      'Send an event:',
      '',
      `  curl -X POST ${url}/v1/events -H "Authorization: Bearer ${key!.key}" -H "Content-Type: application/json" -d '{"type":"user.signup","payload":{"id":1}}'`,
      '',
      `See it in the console: open ${url}/console and sign in with the key.`,
      '',
      '',
    ].join('\n'),
  );
}
