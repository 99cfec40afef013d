import { spawn } from 'node:child_process';

/**
 * Stops the embedded Postgres when the process that started it dies, however it dies.
 *
 * Postgres runs in its own session, so that Ctrl-C and a signal to the server's process group
 * reach the workers (which drain into it) but not Postgres itself; the price is that nothing stops
 * it when the server is SIGKILLed (pm2's kill_timeout, the OOM killer, `kill -9`). Node cannot set
 * PR_SET_PDEATHSIG on a child, so a tiny shell process (a few hundred kB, no Node) watches
 * instead: it reads a pipe from the server, whose write end only the server holds (libuv opens it
 * close-on-exec, so no worker or Postgres inherits it). The kernel closes that end when the server
 * dies, by any signal, and the shell's `read` sees EOF. It runs in a session of its own too, so the
 * signal that kills the server's group does not kill it.
 *
 * The server writes `watch <pid>` for each postmaster it starts and `release` once it stopped it
 * itself. On EOF the watchdog stops only the postmaster it was last told of, and only while the
 * cluster's postmaster.pid still names it (never a later server's): SIGTERM first ("smart": the
 * orphaned workers' last flushes still commit while they drain), SIGINT ("fast") after 5 s,
 * SIGQUIT ("immediate") after 60 s. Signals to the server's process tree are ignored: only EOF counts.
 */
const SCRIPT = `
trap '' INT TERM HUP
pid=
while read -r line; do
  case "$line" in
    "watch "*) pid=\${line#watch } ;;
    release) pid= ;;
  esac
done
[ -n "$pid" ] || exit 0
[ "$(head -n 1 "$1/postmaster.pid" 2>/dev/null)" = "$pid" ] || exit 0
echo "triggers watchdog: the server that started Postgres (pid $pid) is gone; stopping it"
kill -TERM "$pid" 2>/dev/null
ticks=0
while kill -0 "$pid" 2>/dev/null; do
  ticks=$((ticks + 1))
  [ "$ticks" -eq 50 ] && kill -INT "$pid" 2>/dev/null
  [ "$ticks" -eq 600 ] && kill -QUIT "$pid" 2>/dev/null
  sleep 0.1
done
`;

/** The name the watchdog shows in ps (its $0): `sh -c … triggers-pg-watchdog <pgDir>`. */
export const WATCHDOG_NAME = 'triggers-pg-watchdog';

export interface Watchdog {
  watch(postmasterPid: number): void;
  /** The postmaster was stopped on purpose: nothing to do when we exit. */
  release(): void;
}

/** `logFd`: Postgres's log, where the watchdog says what it did. */
export function startWatchdog(pgDir: string, logFd: number): Watchdog {
  const child = spawn('/bin/sh', ['-c', SCRIPT, WATCHDOG_NAME, pgDir], {
    detached: true,
    stdio: ['pipe', logFd, logFd],
  });
  child.unref();
  const stdin = child.stdin!;
  (stdin as unknown as { unref?: () => void }).unref?.(); // never keeps this process alive
  stdin.on('error', () => {}); // the watchdog gone (killed by hand): nothing to tell it any more
  const say = (line: string) => {
    if (!stdin.destroyed) stdin.write(`${line}\n`);
  };
  return {
    watch: (pid) => say(`watch ${pid}`),
    release: () => {
      say('release');
      stdin.end();
    },
  };
}
