import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fs from 'node:fs';
import { TEST_NODE_FLAGS } from './server.js';

/** Worker processes of a server (children of its primary) with their TRIGGERS_ROLE. */
export function workersOf(parent: number): Array<{ pid: number; role: string }> {
  const found: Array<{ pid: number; role: string }> = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== parent) continue;
      const environ = fs.readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0');
      const role = environ.find((line) => line.startsWith('TRIGGERS_ROLE='))?.slice('TRIGGERS_ROLE='.length) ?? '';
      found.push({ pid: Number(entry), role });
    } catch {
      // the process went away while we looked
    }
  }
  return found;
}

/** Child pids of `parent` that run `role` (http or delivery). */
export function workerPids(parent: number, role: string): number[] {
  return workersOf(parent)
    .filter((worker) => worker.role === role)
    .map((worker) => worker.pid);
}

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/main.js');

/**
 * The server as `npm start` runs it, without waiting for it to serve: for starts that must fail.
 * `env` is laid over this process's environment.
 */
export function launchServer(env: Record<string, string>) {
  const proc = spawn(process.execPath, [...TEST_NODE_FLAGS, MAIN], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const run = {
    proc,
    stdout: '',
    stderr: '',
    exited: new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code))),
  };
  proc.stdout!.on('data', (chunk) => {
    run.stdout += chunk;
  });
  proc.stderr!.on('data', (chunk) => {
    run.stderr += chunk;
  });
  return run;
}
