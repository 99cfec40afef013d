import cluster from 'node:cluster';
import { ConfigError, loadConfig, type Config } from './config.js';
import { ENV_ROLE } from './cluster/worker-env.js';
import { DataDirInUse } from './db/embedded-lock.js';
import { loadUws, UwsUnavailableError } from './http/uws.js';
import type { StartFailedMessage } from './ipc.js';
import { configureLog, log } from './log.js';
import { configureSecrets } from './secrets/sealed.js';

/** Entry point: the primary boots storage and forks workers; each worker runs its role. */
async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
    // Every role seals or opens secrets at rest (src/secrets/sealed.ts): each process loads the keys.
    configureSecrets(config.secretsKeys);
    // Before Postgres boots or a worker forks: a Node or libc that no installed uWS build runs on
    // stops here, with one message saying what would work.
    if (cluster.isPrimary) loadUws();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`configuration error: ${error.message}\n`);
      process.exit(1);
    }
    if (error instanceof UwsUnavailableError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
  const role = cluster.isPrimary ? 'primary' : process.env[ENV_ROLE];
  configureLog(config.logLevel, role ?? 'unknown');
  if (cluster.isPrimary) {
    const { runPrimary } = await import('./cluster/primary.js');
    await runPrimary(config);
    return;
  }
  // Every worker role answers the primary's metrics collection (src/metrics/cluster.ts).
  const { installWorkerMetrics } = await import('./metrics/cluster.js');
  installWorkerMetrics();
  if (role === 'http') {
    const { runHttpWorker } = await import('./cluster/http-worker.js');
    await runHttpWorker(config);
    return;
  }
  if (role === 'delivery') {
    const { runDeliveryWorker } = await import('./cluster/delivery-worker.js');
    await runDeliveryWorker(config);
    return;
  }
  throw new Error(`unknown worker role ${role}`);
}

main().catch((error) => {
  const message = error instanceof Error ? error.message : String(error);
  if (cluster.isWorker && process.connected) {
    // The primary prints one line for the whole start (every worker may fail alike) and stops
    // the rest: say why, then go.
    log.error({ err: error }, 'worker failed to start');
    const exit = () => process.exit(1);
    setTimeout(exit, 1000);
    // Not sendToPrimary: the process exits once the message is written, whether or not it could be.
    const failed: StartFailedMessage = { type: 'start_failed', role: process.env[ENV_ROLE] ?? 'unknown', message };
    process.send!(failed, undefined, undefined, exit);
    return;
  }
  // A data folder in use is an operator's situation, not a bug: its reason alone, no stack.
  log.fatal(error instanceof DataDirInUse ? { reason: message } : { err: error }, 'failed to start');
  process.stderr.write(`Triggers API failed to start: ${message}\n`);
  process.exit(1);
});
