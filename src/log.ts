import { pino } from 'pino';

/**
 * Structured JSON logs on stdout. Successful requests are not logged at the default level; errors
 * carry the request id. Nothing here ever receives a full API key. Importing this reads nothing:
 * the entry point sets the level and the process's role once the configuration is known.
 */
export const log = pino({
  level: 'info',
  base: { pid: process.pid },
  timestamp: pino.stdTimeFunctions.isoTime,
});

/** `level` is one of config.ts's LOG_LEVELS (checked there). */
export function configureLog(level: string, role: string): void {
  log.level = level;
  log.setBindings({ role });
}
