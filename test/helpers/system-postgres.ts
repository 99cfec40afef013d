import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './server.js';

const BIN = '/usr/lib/postgresql/15/bin';

/** Whether Debian's PostgreSQL 15 server binaries are installed (package postgresql-15). */
export function hasPostgres15(): boolean {
  return fs.existsSync(path.join(BIN, 'postgres')) && fs.existsSync(path.join(BIN, 'initdb'));
}

/** Whether the `openssl` command is there (throwaway certificates for the TLS tests). */
export function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * A real PostgreSQL 15 cluster listening on TCP 127.0.0.1 (as an external database is reached),
 * run as the `postgres` user when we are root.
 */
export class SystemPostgres {
  private constructor(
    readonly dir: string,
    readonly port: number,
    private readonly proc: ChildProcess,
  ) {}

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  static async start(): Promise<SystemPostgres> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'triggers-pg15-'));
    fs.chmodSync(dir, 0o755);
    const data = path.join(dir, 'data');
    fs.mkdirSync(data, { mode: 0o700 });
    const asRoot = process.getuid?.() === 0;
    const ids = asRoot
      ? {
          uid: Number(execFileSync('id', ['-u', 'postgres']).toString()),
          gid: Number(execFileSync('id', ['-g', 'postgres']).toString()),
        }
      : {};
    if (asRoot) fs.chownSync(data, ids.uid!, ids.gid!);
    execFileSync(
      path.join(BIN, 'initdb'),
      ['-D', data, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C'],
      { ...ids, stdio: 'ignore' },
    );
    const port = await freePort();
    const proc = spawn(
      path.join(BIN, 'postgres'),
      ['-D', data, '-p', String(port), '-k', data, '-c', 'listen_addresses=127.0.0.1'],
      { ...ids, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let log = '';
    await new Promise<void>((resolve, reject) => {
      proc.stderr!.on('data', (chunk) => {
        log += chunk;
        if (log.includes('ready to accept connections')) resolve();
      });
      proc.once('exit', () => reject(new Error(`postgres 15 exited:\n${log}`)));
    });
    return new SystemPostgres(dir, port, proc);
  }

  /** Writes `name` into the data directory, owned by the server's user, mode 0600 (keys must be). */
  installFile(name: string, contents: string | Buffer): void {
    const file = path.join(this.dir, 'data', name);
    fs.writeFileSync(file, contents, { mode: 0o600 });
    fs.chmodSync(file, 0o600);
    if (process.getuid?.() === 0) {
      fs.chownSync(
        file,
        Number(execFileSync('id', ['-u', 'postgres']).toString()),
        Number(execFileSync('id', ['-g', 'postgres']).toString()),
      );
    }
  }

  /**
   * Appends settings to postgresql.conf (or prepends lines to pg_hba.conf) and reloads: new
   * connections see them, including a new TLS certificate and key.
   */
  async reconfigure(settings: string[], hba: string[] = []): Promise<void> {
    const data = path.join(this.dir, 'data');
    if (settings.length > 0) fs.appendFileSync(path.join(data, 'postgresql.conf'), '\n' + settings.join('\n') + '\n');
    if (hba.length > 0)
      fs.writeFileSync(
        path.join(data, 'pg_hba.conf'),
        hba.join('\n') + '\n' + fs.readFileSync(path.join(data, 'pg_hba.conf'), 'utf8'),
      );
    this.proc.kill('SIGHUP');
    // No acknowledgement of a reload: give the postmaster a moment to reread its files.
    await new Promise((resolve) => setTimeout(resolve, 500));
  }

  async stop(): Promise<void> {
    const exited = new Promise((resolve) => this.proc.once('exit', resolve));
    this.proc.kill('SIGINT');
    await exited;
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
