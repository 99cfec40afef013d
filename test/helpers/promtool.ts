import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import type { TestContext } from 'node:test';

/** promtool (Debian package `prometheus`; `.ci/run` installs it), or null when it is not installed. */
export const PROMTOOL: string | null =
  ['/usr/bin/promtool', '/usr/local/bin/promtool'].find((candidate) => fs.existsSync(candidate)) ??
  (spawnSync('sh', ['-c', 'command -v promtool']).stdout?.toString().trim() || null);

/**
 * promtool's path, or null after skipping the test with a message. Under CI=true a missing
 * promtool fails the test instead: tests never skip in CI.
 */
export function requirePromtool(t: TestContext, what: string): string | null {
  if (PROMTOOL) return PROMTOOL;
  if (process.env.CI === 'true') assert.fail('promtool is required under CI (Debian package "prometheus")');
  t.skip(`promtool not installed (Debian package "prometheus"): ${what} skipped`);
  return null;
}
