import { isMessage } from '../ipc.js';

/**
 * Everything that must make a worker drain and exit: the primary's request, SIGTERM and SIGINT
 * (Ctrl-C signals the whole process group, so workers see it too: drain, never die mid-flush),
 * and the primary disappearing (nobody would stop or restart us).
 */
export function onShutdownRequest(drainAndExit: (reason: string) => void): void {
  process.on('message', (message: unknown) => {
    if (isMessage(message, 'shutdown')) drainAndExit('primary asked');
  });
  process.on('SIGTERM', () => drainAndExit('SIGTERM'));
  process.on('SIGINT', () => drainAndExit('SIGINT'));
  process.on('disconnect', () => drainAndExit('primary gone'));
}
