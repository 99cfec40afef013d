/**
 * A dependency's health check, as GET /status reports it (src/ops/status.ts). Here, below the
 * rooms that provide checks (the rate limiter's Redis, the HTTP app's Postgres) and the one that
 * serves them, so a provider needs no import of the status route.
 */
export type CheckResult = 'ok' | 'down' | 'disabled';

/** A dependency check: 'down' for a required one makes the whole status degraded (503). */
export interface DependencyCheck {
  name: string;
  required: boolean;
  run(): Promise<CheckResult>;
}
