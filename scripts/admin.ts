import { createKey, createOrg, getOrg, listKeys, listOrgs, revokeKey, updateOrg } from '../src/admin/service.js';
import { loadConfig } from '../src/config.js';
import { openDatabase, type Sql } from '../src/db/connect.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../src/db/embedded.js';
import { ensurePartitions, migrate } from '../src/db/migrate.js';
import { ApiError } from '../src/errors.js';
import { configureSecrets } from '../src/secrets/sealed.js';

const USAGE = `Triggers API admin CLI — the admin API's operations, straight against the database.

  npm run admin -- orgs create --name NAME [--rate N] [--burst N] [--require-event-types true|false]
  npm run admin -- orgs list
  npm run admin -- orgs get ORG_ID
  npm run admin -- orgs update ORG_ID [--name NAME] [--rate N] [--burst N] [--require-event-types true|false]
  npm run admin -- keys create ORG_ID [--name NAME] [--scopes events:write,events:read,webhooks:manage] [--env live|test]
  npm run admin -- keys list ORG_ID
  npm run admin -- keys revoke KEY_ID

Uses DATABASE_URL when set, otherwise the embedded database under DATA_DIR (default ./.data),
starting it for the command if the server is not running. Prints JSON.`;

function parseFlags(args: string[]): { positional: string[]; flags: Record<string, string> } {
  const positional: string[] = [];
  const flags: Record<string, string> = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg.startsWith('--')) {
      const [name, inline] = arg.slice(2).split('=', 2);
      const value = inline ?? args[++i];
      if (value === undefined) throw new Error(`--${name} needs a value`);
      flags[name!] = value;
    } else {
      positional.push(arg);
    }
  }
  return { positional, flags };
}

function limits(flags: Record<string, string>): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  if (flags.name !== undefined) body.name = flags.name;
  if (flags.rate !== undefined) body.rate_limit_per_sec = Number(flags.rate);
  if (flags.burst !== undefined) body.burst = Number(flags.burst);
  if (flags['require-event-types'] !== undefined)
    body.require_event_types =
      flags['require-event-types'] === 'true'
        ? true
        : flags['require-event-types'] === 'false'
          ? false
          : flags['require-event-types'];
  return body;
}

async function run(sql: Sql, args: string[]): Promise<unknown> {
  const config = loadConfig();
  const { positional, flags } = parseFlags(args);
  const [noun, verb, id] = positional;
  const need = (value: string | undefined, what: string): string => {
    if (!value) throw new Error(`missing ${what}\n\n${USAGE}`);
    return value;
  };
  const orNotFound = <T>(value: T | null, what: string): T => {
    if (value === null) throw new Error(`${what} not found`);
    return value;
  };
  switch (`${noun} ${verb}`) {
    case 'orgs create':
      return createOrg(sql, limits(flags), {
        rateLimitPerSec: config.defaultRateLimitPerSec,
        burst: config.defaultBurst,
      });
    case 'orgs list':
      return listOrgs(sql);
    case 'orgs get':
      return orNotFound(await getOrg(sql, need(id, 'ORG_ID')), 'org');
    case 'orgs update':
      return orNotFound(await updateOrg(sql, need(id, 'ORG_ID'), limits(flags)), 'org');
    case 'keys create': {
      const body: Record<string, unknown> = {};
      if (flags.name !== undefined) body.name = flags.name;
      if (flags.env !== undefined) body.env = flags.env;
      if (flags.scopes !== undefined)
        body.scopes = flags.scopes
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean);
      return orNotFound(await createKey(sql, need(id, 'ORG_ID'), body), 'org');
    }
    case 'keys list':
      return orNotFound(await listKeys(sql, need(id, 'ORG_ID')), 'org');
    case 'keys revoke':
      return orNotFound(await revokeKey(sql, need(id, 'KEY_ID')), 'key');
    default:
      throw new Error(USAGE);
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args.length === 0 || args[0] === 'help' || args[0] === '--help') {
    process.stdout.write(USAGE + '\n');
    return;
  }
  const config = loadConfig();
  configureSecrets(config.secretsKeys);
  let embedded: EmbeddedPostgres | null = null;
  let databaseUrl = config.databaseUrl;
  if (!databaseUrl) {
    embedded = await startEmbeddedPostgres(config.dataDir, () => {}, config.embeddedPgHome);
    databaseUrl = embedded.databaseUrl;
  }
  const sql = openDatabase(databaseUrl, { max: 2, name: 'triggers-admin-cli' });
  try {
    await migrate(sql);
    await ensurePartitions(sql);
    const result = await run(sql, args);
    process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  } finally {
    await sql.end({ timeout: 1 });
    // Stop the embedded Postgres only if this command started it, never the server's.
    if (embedded && !embedded.adopted) await embedded.stop();
  }
}

main().catch((error) => {
  if (error instanceof ApiError) {
    const details = error.details?.map((d) => `\n  ${d.field}: ${d.message}`).join('') ?? '';
    process.stderr.write(`error: ${error.message}${details}\n`);
  } else {
    process.stderr.write(`error: ${error instanceof Error ? error.message : String(error)}\n`);
  }
  process.exit(1);
});
