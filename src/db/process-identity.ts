import fs from 'node:fs';

/**
 * A process as recorded in a file that may outlive it: its pid and, on Linux, its start time
 * (field 22 of /proc/<pid>/stat, clock ticks since boot), so a pid reused by another process after
 * a crash or a reboot is not taken for the one recorded.
 */
export interface ProcessIdentity {
  pid: number;
  started: string | null;
}

function startTime(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // alive, another user's
  }
}

export function identify(pid: number): ProcessIdentity {
  return { pid, started: startTime(pid) };
}

/** The recorded process is still running (not merely its pid, reused). */
export function isRunning(recorded: ProcessIdentity): boolean {
  if (!Number.isInteger(recorded.pid) || recorded.pid <= 0 || !alive(recorded.pid)) return false;
  if (recorded.started === null) return true;
  const now = startTime(recorded.pid);
  return now === null || now === recorded.started;
}
