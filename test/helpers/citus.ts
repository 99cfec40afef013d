import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { freePort } from './server.js';

const run = promisify(execFile);

// dist/test/helpers/ → the checkout; CI checks `shared` out beside it.
const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const CITUS_SO = '/usr/lib/postgresql/15/lib/citus.so';
// cluster.sh's default ports (57636-57638) and the neighbourhood developers move BASE to for a
// cluster of their own: a test cluster never takes them, even while theirs is stopped.
const RESERVED_PORTS = { from: 57600, to: 57799 };

/** The folder with Citus's build and scripts: CITUS_DIR, else `../shared/citus` beside the checkout. */
export function citusDir(): string {
  return process.env.CITUS_DIR || path.resolve(REPO_ROOT, '..', 'shared', 'citus');
}

/**
 * Why Citus tests cannot run here, or null when they can. Run by hand without Citus, the tests
 * skip with this message; in CI (CI=true) it is a failure, not a skip.
 */
export function citusUnavailable(): string | null {
  const reason = citusMissing();
  if (reason && process.env.CI === 'true') throw new Error(`CI=true but ${reason}`);
  return reason;
}

function citusMissing(): string | null {
  const dir = citusDir();
  if (!fs.existsSync(path.join(dir, 'cluster.sh'))) {
    return `no Citus folder at ${dir} (expected ../shared/citus beside the checkout; set CITUS_DIR to point elsewhere)`;
  }
  if (!fs.existsSync(CITUS_SO))
    return `Citus is not installed (${CITUS_SO} is missing): run ${path.join(dir, 'install.sh')} as root`;
  // cluster.sh runs every instance as the postgres user, through runuser unless it is that user.
  const user = os.userInfo().username;
  if (process.getuid?.() !== 0 && user !== 'postgres')
    return `cluster.sh runs Citus as the postgres user: run the tests as root or postgres, not ${user}`;
  return null;
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** The first of `count` consecutive free ports on 127.0.0.1. */
async function freePortRun(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = await freePort();
    const last = base + count - 1;
    if (last > 65535 || (last >= RESERVED_PORTS.from && base <= RESERVED_PORTS.to)) continue;
    let free = true;
    for (let port = base + 1; port <= last && free; port++) free = await portIsFree(port);
    if (free) return base;
  }
  throw new Error(`no ${count} consecutive free ports found`);
}

/**
 * A throwaway Citus cluster (a coordinator and two workers, PostgreSQL 15 run as the postgres
 * user, trust auth on loopback) made by `cluster.sh` in its own temp folder on three consecutive
 * free ports. `url` is the coordinator's, as DATABASE_URL; `query` is a one-connection client on
 * it for assertions, used as a tagged template.
 */
export class TestCitus {
  readonly query: postgres.Sql;

  private constructor(
    readonly dir: string,
    readonly port: number,
    readonly url: string,
  ) {
    this.query = postgres(url, { max: 1, onnotice: () => {} });
  }

  /** The workers' ports (the coordinator's plus one and two). */
  get workerPorts(): number[] {
    return [this.port + 1, this.port + 2];
  }

  /**
   * freePortRun() frees its ports before the instances bind them, one after another over seconds:
   * another process (an outgoing connection's local port, a server) can take one in between (seen
   * in CI: "could not bind … Address already in use" for a worker). Another run of ports then.
   */
  static async start(): Promise<TestCitus> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await TestCitus.startOnce();
      } catch (error) {
        if (attempt === 3 || !String((error as Error).message).includes('Address already in use')) throw error;
      }
    }
  }

  private static async startOnce(): Promise<TestCitus> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'triggers-citus-'));
    // The instances run as postgres: it must reach the folder (mkdtemp makes it 0700).
    fs.chmodSync(dir, 0o755);
    const port = await freePortRun(3);
    try {
      const { stdout } = await run(path.join(citusDir(), 'cluster.sh'), ['start', dir], {
        env: { ...process.env, BASE: String(port) },
        timeout: 180_000,
      });
      const url = stdout.trim().split('\n').at(-1) ?? '';
      if (!url.startsWith('postgres://')) throw new Error(`cluster.sh start printed no coordinator URL:\n${stdout}`);
      return new TestCitus(dir, port, url);
    } catch (error) {
      const logs = ['n0', 'n1', 'n2']
        .map((node) => {
          try {
            return (
              `--- ${node}/log\n` +
              fs
                .readFileSync(path.join(dir, node, 'log'), 'utf8')
                .split('\n')
                .slice(-20)
                .join('\n')
            );
          } catch {
            return '';
          }
        })
        .join('\n');
      await stopCluster(dir);
      throw new Error(`cluster.sh start ${dir} (BASE=${port}) failed: ${(error as Error).message}\n${logs}`);
    }
  }

  async destroy(): Promise<void> {
    await this.query.end({ timeout: 1 });
    await stopCluster(this.dir);
  }
}

async function stopCluster(dir: string): Promise<void> {
  try {
    await run(path.join(citusDir(), 'cluster.sh'), ['stop', dir], { timeout: 60_000 });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
