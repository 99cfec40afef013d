import { loadConfig } from '../src/config.js';
import { openDatabase } from '../src/db/connect.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../src/db/embedded.js';
import { migrate } from '../src/db/migrate.js';
import { resealStoredSecrets } from '../src/secrets/reseal.js';
import { configureSecrets } from '../src/secrets/sealed.js';

const USAGE = `Triggers API: re-seal every stored secret under the current SECRETS_KEY (docs/SECRETS.md).

  npm run secrets:rotate [-- --batch N]

Opens each webhook signing secret (and destination credential) with SECRETS_KEY or a key in
SECRETS_KEY_PREVIOUS, or takes it as it is when stored clear, and stores it sealed under
SECRETS_KEY (clear when SECRETS_KEY is unset). Safe while the server runs, and to run again.
Uses DATABASE_URL when set, otherwise the embedded database under DATA_DIR. Prints a JSON
report; exits 1 when some value could not be opened (its key id is named, never a key).`;

function batchSize(args: string[]): number {
  const at = args.findIndex((arg) => arg === '--batch' || arg.startsWith('--batch='));
  if (at < 0) return 500;
  const raw = args[at]!.includes('=') ? args[at]!.split('=')[1] : args[at + 1];
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1 || value > 100_000)
    throw new Error(`--batch must be an integer from 1 to 100000\n\n${USAGE}`);
  return value;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args.includes('help') || args.includes('--help')) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const batch = batchSize(args);
  const config = loadConfig();
  configureSecrets(config.secretsKeys);
  let embedded: EmbeddedPostgres | null = null;
  let databaseUrl = config.databaseUrl;
  if (!databaseUrl) {
    embedded = await startEmbeddedPostgres(config.dataDir, () => {}, config.embeddedPgHome);
    databaseUrl = embedded.databaseUrl;
  }
  const sql = openDatabase(databaseUrl, { max: 2, name: 'triggers-secrets-rotate' });
  try {
    await migrate(sql);
    const report = await resealStoredSecrets(sql, {
      batchSize: batch,
      onBatch: (progress) =>
        process.stderr.write(`re-sealing: ${progress.rows_scanned} rows read, ${progress.rows_updated} updated\n`),
    });
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    if (report.failed.length > 0) process.exitCode = 1;
  } finally {
    await sql.end({ timeout: 1 });
    // Stop the embedded Postgres only if this command started it, never the server's.
    if (embedded && !embedded.adopted) await embedded.stop();
  }
}

main().catch((error) => {
  process.stderr.write(`error: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
