import type { Worker } from 'node:cluster';
import { log } from './log.js';

/**
 * Every IPC send goes through here. A send without a callback reports a closed channel (a worker
 * that died a moment ago, a primary that is gone while its workers drain) as an 'error' event;
 * with nobody listening, that takes the sending process down. With a callback the failure is
 * reported there instead, and a message to a process that is gone has nobody to miss it.
 */
const ignoreClosedChannel = (): void => {};

/** From a worker: false when there is no channel (no primary, or it is gone). */
export function sendToPrimary(message: object, onFailed: (error: Error) => void = ignoreClosedChannel): boolean {
  if (!process.send || !process.connected) return false;
  process.send(message, undefined, undefined, (error: Error | null) => {
    if (error) onFailed(error);
  });
  return true;
}

/** From the primary: false when the worker's channel is closed already. */
export function sendToWorker(worker: Worker, message: object): boolean {
  if (!worker.isConnected()) return false;
  worker.send(message, undefined, ignoreClosedChannel);
  return true;
}

/**
 * The primary listens for 'error' on each worker it forks: an IPC write failing outside a send
 * callback (EPIPE on a channel whose other end just died) is logged, never thrown.
 */
export function logWorkerErrors(worker: Worker, role: string): void {
  worker.on('error', (error: Error) =>
    log.warn({ err: error.message, pid: worker.process.pid, role }, 'IPC with a worker failed (it is exiting)'),
  );
}
