import { childrenOf, descendantsOf, machineBusySeconds, procStat, roleOf } from '../proc-stats.js';
import type { ReceiverProcess } from './receiver-process.js';
import type { ServerProcess } from './server-process.js';

type Group = 'delivery' | 'http' | 'primary' | 'other' | 'postgres' | 'receiver';
const GROUPS: Group[] = ['delivery', 'http', 'postgres', 'receiver', 'primary', 'other'];
/** CPU seconds per group; `elsewhere`: the machine's busy time outside every measured process. */
export type CpuSplit = Record<Group | 'bench' | 'elsewhere', number>;
export type CpuSnapshot = { procs: Map<string, { group: Group; cpu: number }>; bench: number; machine: number };
export const emptySplit = (): CpuSplit =>
  Object.fromEntries([...GROUPS, 'bench', 'elsewhere'].map((g) => [g, 0])) as CpuSplit;

export function cpuSnapshot(server: ServerProcess, receiver: ReceiverProcess): CpuSnapshot {
  const procs = new Map<string, { group: Group; cpu: number }>();
  const add = (pid: number, group: Group) => {
    const stat = procStat(pid);
    if (stat) procs.set(`${pid}:${stat.start}`, { group, cpu: stat.cpu });
  };
  const postgresPids = new Set<number>();
  const postmaster = server.postmasterPid();
  if (postmaster !== null) for (const pid of [postmaster, ...descendantsOf(postmaster)]) postgresPids.add(pid);
  for (const pid of postgresPids) add(pid, 'postgres');
  const primary = server.proc.pid!;
  add(primary, 'primary');
  for (const child of childrenOf(primary)) {
    if (postgresPids.has(child)) continue; // the primary spawned the postmaster
    const role = roleOf(child);
    const group: Group = role === 'delivery' ? 'delivery' : role === 'http' ? 'http' : 'other';
    for (const pid of [child, ...descendantsOf(child)]) add(pid, group);
  }
  add(receiver.proc.pid!, 'receiver');
  const usage = process.cpuUsage();
  return { procs, bench: (usage.user + usage.system) / 1e6, machine: machineBusySeconds() };
}

export function cpuDiff(after: CpuSnapshot, before: CpuSnapshot): CpuSplit {
  const out = emptySplit();
  for (const [key, { group, cpu }] of after.procs) out[group] += Math.max(0, cpu - (before.procs.get(key)?.cpu ?? 0));
  out.bench = after.bench - before.bench;
  const measured = [...GROUPS, 'bench' as const].reduce((sum, g) => sum + out[g], 0);
  out.elsewhere = Math.max(0, after.machine - before.machine - measured);
  return out;
}
