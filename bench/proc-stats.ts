import fs from 'node:fs';

/** CPU seconds and RSS of processes, read from /proc (Linux). */

/** The postmaster's pid from a cluster directory's postmaster.pid; null when it is not running. */
export function postmasterPid(pgDir: string): number | null {
  const pid = Number(read(`${pgDir}/postmaster.pid`)?.split('\n')[0]);
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}

const TICKS_PER_SECOND = 100;

function read(path: string): string | null {
  try {
    return fs.readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

export function childrenOf(pid: number): number[] {
  const tasks = fs.existsSync(`/proc/${pid}/task`) ? fs.readdirSync(`/proc/${pid}/task`) : [];
  return tasks
    .flatMap((task) => (read(`/proc/${pid}/task/${task}/children`) ?? '').trim().split(/\s+/))
    .filter(Boolean)
    .map(Number);
}

export function descendantsOf(pid: number): number[] {
  const out: number[] = [];
  const stack = [pid];
  while (stack.length > 0) {
    for (const child of childrenOf(stack.pop()!)) {
      out.push(child);
      stack.push(child);
    }
  }
  return out;
}

export function commandOf(pid: number): string {
  return (read(`/proc/${pid}/cmdline`) ?? '').replace(/\0/g, ' ').trim();
}

/** utime+stime in seconds and the start time (to tell a reused pid apart), or null if gone. */
export function procStat(pid: number): { cpu: number; start: string } | null {
  const stat = read(`/proc/${pid}/stat`);
  if (!stat) return null;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { cpu: (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND, start: fields[19]! };
}

/** utime + stime of one process in seconds (0 if gone). */
export function cpuSeconds(pid: number): number {
  return procStat(pid)?.cpu ?? 0;
}

/** What a server process runs as (TRIGGERS_ROLE in its environment: http, delivery), or null. */
export function roleOf(pid: number): string | null {
  const environ = read(`/proc/${pid}/environ`);
  if (!environ) return null;
  const entry = environ.split('\0').find((e) => e.startsWith('TRIGGERS_ROLE='));
  return entry ? entry.slice('TRIGGERS_ROLE='.length) : null;
}

export function rssMb(pid: number): number {
  const status = read(`/proc/${pid}/status`) ?? '';
  const match = /VmRSS:\s+(\d+) kB/.exec(status);
  return match ? Number(match[1]) / 1024 : 0;
}

/** Whole-machine busy CPU seconds (all cores), from /proc/stat. */
export function machineBusySeconds(): number {
  const line = (read('/proc/stat') ?? '').split('\n')[0]!.split(/\s+/).slice(1).map(Number);
  const idle = (line[3] ?? 0) + (line[4] ?? 0);
  const total = line.reduce((sum, n) => sum + n, 0);
  return (total - idle) / TICKS_PER_SECOND;
}

export type CpuGroups = Record<string, number>;

/**
 * CPU seconds of a server's process tree, grouped: node processes other than the primary
 * (`node_workers`, of which `http_workers` are those with TRIGGERS_ROLE=http), and Postgres.
 */
export function serverCpu(primaryPid: number): CpuGroups {
  const groups: CpuGroups = { primary: cpuSeconds(primaryPid), node_workers: 0, http_workers: 0, postgres: 0 };
  for (const pid of descendantsOf(primaryPid)) {
    const command = commandOf(pid);
    const cpu = cpuSeconds(pid);
    if (command.includes('postgres')) groups.postgres! += cpu;
    else {
      groups.node_workers! += cpu;
      if (roleOf(pid) === 'http') groups.http_workers! += cpu;
    }
  }
  return groups;
}

/** CPU seconds of a process and all its descendants. */
export function treeCpu(pid: number): number {
  return [pid, ...descendantsOf(pid)].reduce((sum, p) => sum + cpuSeconds(p), 0);
}

export function diffCpu(after: CpuGroups, before: CpuGroups): CpuGroups {
  const out: CpuGroups = {};
  for (const key of Object.keys(after)) out[key] = Math.max(0, after[key]! - (before[key] ?? 0));
  return out;
}
