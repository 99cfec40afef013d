import { pino } from 'pino';

/**
 * Structured JSON logs on stdout. Successful requests are not logged at the default level; errors
 * carry the request id. Nothing here ever receives a full API key.
 */
const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
const level = (process.env.LOG_LEVEL || 'info').toLowerCase();
// Checked here, not in config.ts: this module is loaded (and pino would throw a stack trace) first.
if (!LEVELS.includes(level)) {
  process.stderr.write(`configuration error: LOG_LEVEL must be one of ${LEVELS.join(', ')}, got "${process.env.LOG_LEVEL}"\n`);
  process.exit(1);
}

export const log = pino({
  level,
  base: { pid: process.pid, role: process.env.TRIGGERS_ROLE || 'primary' },
  timestamp: pino.stdTimeFunctions.isoTime,
});
