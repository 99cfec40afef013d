import fs from 'node:fs';

/** Child pids of `parent` whose environment says they run `role` (TRIGGERS_ROLE: http or delivery). */
export function workerPids(parent: number, role: string): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== parent) continue;
      if (fs.readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0').includes(`TRIGGERS_ROLE=${role}`)) pids.push(Number(entry));
    } catch {
      // the process went away while we looked
    }
  }
  return pids;
}
