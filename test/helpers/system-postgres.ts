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

/**
 * A real PostgreSQL 15 cluster listening on TCP 127.0.0.1 (as an external database is reached),
 * run as the `postgres` user when we are root.
 */
export class SystemPostgres {
  private constructor(readonly dir: string, readonly port: number, private readonly proc: ChildProcess) {}

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  static async start(): Promise<SystemPostgres> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'triggers-pg15-'));
    fs.chmodSync(dir, 0o755);
    const data = path.join(dir, 'data');
    fs.mkdirSync(data, { mode: 0o700 });
    const asRoot = process.getuid?.() === 0;
    const ids = asRoot ? { uid: Number(execFileSync('id', ['-u', 'postgres']).toString()), gid: Number(execFileSync('id', ['-g', 'postgres']).toString()) } : {};
    if (asRoot) fs.chownSync(data, ids.uid!, ids.gid!);
    execFileSync(path.join(BIN, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C'], { ...ids, stdio: 'ignore' });
    const port = await freePort();
    const proc = spawn(path.join(BIN, 'postgres'), ['-D', data, '-p', String(port), '-k', data, '-c', 'listen_addresses=127.0.0.1'], { ...ids, stdio: ['ignore', 'ignore', 'pipe'] });
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

  async stop(): Promise<void> {
    const exited = new Promise((resolve) => this.proc.once('exit', resolve));
    this.proc.kill('SIGINT');
    await exited;
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
