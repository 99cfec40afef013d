import fs from 'node:fs';

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
  return workersOf(parent).filter((worker) => worker.role === role).map((worker) => worker.pid);
}
