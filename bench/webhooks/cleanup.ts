import fs from 'node:fs';
import type postgres from 'postgres';
import type { Pool } from 'undici';
import type { ReceiverProcess } from './receiver-process.js';
import type { ServerProcess } from './server-process.js';

/** What the run has started so far: whatever ends it (the end, an error, a signal, the deadline) stops these. */
export const started: {
  receiver?: ReceiverProcess;
  server?: ServerProcess;
  sql?: postgres.Sql;
  ingest?: Pool;
  dataDir?: string;
} = {};

let cleanupStarted: Promise<void> | null = null;

/** Stops what was started and removes the temp dir; once, however many callers ask. */
export function cleanup(): Promise<void> {
  cleanupStarted ??= (async () => {
    const { receiver, server, sql, ingest, dataDir } = started;
    await ingest?.destroy().catch(() => {});
    await sql?.end({ timeout: 1 }).catch(() => {});
    await receiver?.stop().catch(() => {});
    await server
      ?.stop()
      .catch((error) => process.stderr.write(`bench:webhooks: stopping the server: ${(error as Error).message}\n`));
    if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
  })();
  return cleanupStarted;
}
