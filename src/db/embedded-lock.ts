import fs from 'node:fs';
import path from 'node:path';
import { identify, isRunning, type ProcessIdentity } from './process-identity.js';

/**
 * One data folder, one owner (issue 29). Whoever runs the embedded Postgres of a DATA_DIR (the
 * server for its whole life, or the admin CLI for one command when no server runs) holds
 * DATA_DIR/server.lock, which names it. A second server is refused before it changes anything;
 * the admin CLI uses a live server's Postgres instead of starting one. A lock whose process is
 * gone (SIGKILL, OOM, power cut) is stale and taken over: then a Postgres still running on the
 * cluster was left by that process, and the new owner may stop it.
 */
export interface Holder extends ProcessIdentity {
  kind: 'server' | 'admin';
  host?: string;
  port?: number;
}

export class DataDirInUse extends Error {
  constructor(
    readonly holder: Holder,
    dir: string,
  ) {
    super(
      holder.kind === 'server'
        ? `${dir} is in use by the Triggers API server with pid ${holder.pid}, serving on http://${holder.host}:${holder.port} with the embedded Postgres there: stop that server first, or give this one another DATA_DIR (and PORT)`
        : `${dir} is in use by the admin CLI (pid ${holder.pid}), which started the embedded Postgres for one command: try again when it is done`,
    );
  }
}

export interface DataDirLock {
  readonly dirs: string[];
  /** Also holds `dir` (a relocated cluster's folder) under the same name; throws DataDirInUse. */
  extend(dir: string): void;
  release(): void;
}

const FILE = 'server.lock';

function read(file: string): Holder | null {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Holder;
  } catch {
    return null;
  }
}

/** Holds dir/server.lock for `me`, taking over a stale one; throws DataDirInUse when it is live. */
function claimOne(dir: string, me: Holder): void {
  const file = path.join(dir, FILE);
  const mine = JSON.stringify(me);
  for (let attempt = 0; ; attempt++) {
    try {
      fs.writeFileSync(file, mine, { flag: 'wx', mode: 0o644 });
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 5) throw error;
    }
    const raw = fs.readFileSync(file, 'utf8');
    const holder = read(file);
    if (holder === null) {
      // Being written by a start racing us (or garbage): look again shortly, then treat as stale.
      if (attempt < 3) {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
        continue;
      }
    } else if (isRunning(holder)) {
      throw new DataDirInUse(holder, dir);
    }
    // Stale. Moved aside rather than deleted, and checked: if another start replaced it meanwhile
    // with its own live lock, that one is put back and wins.
    const aside = `${file}.stale-${process.pid}`;
    try {
      fs.renameSync(file, aside);
    } catch {
      continue;
    }
    if (fs.readFileSync(aside, 'utf8') !== raw) {
      try {
        fs.linkSync(aside, file);
      } catch {
        /* a third start holds it now */
      }
    }
    fs.rmSync(aside, { force: true });
  }
}

function releaseOne(dir: string, mine: string): void {
  const file = path.join(dir, FILE);
  try {
    if (fs.readFileSync(file, 'utf8') === mine) fs.unlinkSync(file);
  } catch {
    // already gone
  }
}

export function claimDataDir(dataDir: string, who: Pick<Holder, 'kind' | 'host' | 'port'>): DataDirLock {
  const me: Holder = { ...identify(process.pid), ...who };
  const mine = JSON.stringify(me);
  fs.mkdirSync(dataDir, { recursive: true });
  claimOne(dataDir, me);
  const dirs = [dataDir];
  return {
    dirs,
    extend(dir) {
      if (dirs.includes(dir)) return;
      claimOne(dir, me);
      dirs.push(dir);
    },
    release() {
      for (const dir of dirs.splice(0)) releaseOne(dir, mine);
    },
  };
}

/** The live holder of dataDir's lock, if any (the admin CLI's question: is a server running?). */
export function liveHolder(dataDir: string): Holder | null {
  const holder = read(path.join(dataDir, FILE));
  return holder && isRunning(holder) ? holder : null;
}
