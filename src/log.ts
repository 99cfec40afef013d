import { pino } from 'pino';

/**
 * Structured JSON logs on stdout. Successful requests are not logged at the default level; errors
 * carry the request id. Nothing here ever receives a full API key.
 */
export const log = pino({
  level: process.env.LOG_LEVEL || 'info',
  base: { pid: process.pid, role: process.env.TRIGGERS_ROLE || 'primary' },
  timestamp: pino.stdTimeFunctions.isoTime,
});
