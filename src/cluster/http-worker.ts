import type { Config } from '../config.js';
import { loadUws } from '../http/uws.js';
import { log } from '../log.js';
import { createHttpApp } from './http-app.js';
import { ListenError, listenProblem } from './listen-check.js';
import { sendToPrimary } from '../ipc.js';
import { ENV_DATABASE_URL, ENV_STARTED_AT } from './messages.js';
import { onShutdownRequest } from './shutdown-signals.js';

/**
 * One HTTP process: the app (src/cluster/http-app.ts) listening on PORT with SO_REUSEPORT, so the
 * kernel spreads connections over the workers, each with its own key cache, batcher and pools.
 */
export async function runHttpWorker(config: Config): Promise<void> {
  const uws = loadUws();
  const http = await createHttpApp(
    uws,
    config,
    process.env[ENV_DATABASE_URL]!,
    Number(process.env[ENV_STARTED_AT]) || Date.now(),
  );
  const listenSocket = await new Promise<unknown>((resolve) => {
    http.app.listen(config.host, config.port, (token) => resolve(token));
  });
  if (!listenSocket) {
    const problem = await listenProblem(config.host, config.port);
    throw new ListenError(problem ?? `cannot listen on ${config.host}:${config.port}; check HOST and PORT=…`);
  }

  let stopping: Promise<void> | null = null;
  const drainAndExit = (reason: string) => {
    stopping ??= (async () => {
      log.info({ reason }, 'draining');
      const drained = http.drain(config.shutdownTimeoutMs); // refuses new requests at once
      uws.us_listen_socket_close(listenSocket as never);
      await drained;
      await http.close();
      process.exit(0);
    })();
  };
  onShutdownRequest(drainAndExit);

  sendToPrimary({ type: 'ready', role: 'http' });
}
