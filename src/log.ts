import { pino } from 'pino';

/**
 * Structured JSON logs on stdout. Successful requests are not logged at the default level; errors
 * carry the request id. Nothing here ever receives a full API key. Importing this reads nothing:
 * the entry point sets the level and the process's role once the configuration is known.
 *
 * An error is logged one way everywhere: the error object itself under `err`
 * (`log.warn({ err: error }, '…')`), which pino's serializer writes as its type, message, stack and
 * own fields such as Postgres' `code`. Never the message alone: the code and the stack are lost.
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
