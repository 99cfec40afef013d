import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../src/config.js';

/*
 * deploy/systemd/triggers-api.service: valid for systemd (systemd-analyze verify, where systemd is
 * installed), and with the drain of ecosystem.config.cjs: SIGTERM to the primary only, a stop
 * timeout past the server's own drain deadline, restarts on failure with a back-off and a limit.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const UNIT = path.join(ROOT, 'deploy/systemd/triggers-api.service');
// What the primary may still do after its drain deadline (SHUTDOWN_TIMEOUT_MS): close its pool
// (1 s) and stop the embedded Postgres (a fast shutdown, a few seconds).
const AFTER_DRAIN_MS = 5_000;

type Sections = Map<string, Map<string, string[]>>;

/** The unit file's sections and their settings (a key may repeat, e.g. Environment=). */
function parseUnit(text: string): Sections {
  const sections: Sections = new Map();
  let current: Map<string, string[]> | null = null;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const section = /^\[(\w+)\]$/.exec(line);
    if (section) {
      current = new Map();
      sections.set(section[1]!, current);
      continue;
    }
    const setting = /^([A-Za-z]+)=(.*)$/.exec(line);
    assert.ok(setting && current, `unreadable unit line: ${raw}`);
    current.set(setting[1]!, [...(current.get(setting[1]!) ?? []), setting[2]!]);
  }
  return sections;
}

/** A systemd time span in milliseconds: "20", "20s", "1min 30s", "500ms". */
function timeSpanMs(value: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, sec: 1000, m: 60_000, min: 60_000, h: 3_600_000 };
  let total = 0;
  for (const part of value.trim().split(/\s+/)) {
    const match = /^(\d+(?:\.\d+)?)([a-z]*)$/.exec(part);
    assert.ok(match && (match[2] === '' || units[match[2]!] !== undefined), `unreadable time span ${value}`);
    total += Number(match[1]) * (match[2] === '' ? 1000 : units[match[2]!]!);
  }
  return total;
}

const text = fs.readFileSync(UNIT, 'utf8');
const unit = parseUnit(text);
const one = (section: string, key: string): string | undefined => {
  const values = unit.get(section)?.get(key);
  assert.ok(!values || values.length === 1, `[${section}] ${key} is set ${values?.length} times`);
  return values?.[0];
};

describe('deploy/systemd/triggers-api.service', () => {
  test('drains like the pm2 file: SIGTERM to the primary only, stop timeout past the drain deadline', () => {
    assert.equal(one('Service', 'KillSignal'), 'SIGTERM');
    assert.equal(
      one('Service', 'KillMode'),
      'mixed',
      'the primary stops its workers and Postgres in order; control-group would signal them all at once',
    );
    const environment = new Map(
      (unit.get('Service')?.get('Environment') ?? []).map((entry) => {
        const at = entry.indexOf('=');
        return [entry.slice(0, at), entry.slice(at + 1)] as const;
      }),
    );
    // The unit's own SHUTDOWN_TIMEOUT_MS if it sets one, else the server's default.
    const config = loadConfig(Object.fromEntries(environment));
    const stopMs = timeSpanMs(one('Service', 'TimeoutStopSec') ?? '90');
    assert.ok(
      stopMs >= config.shutdownTimeoutMs + AFTER_DRAIN_MS,
      `TimeoutStopSec ${stopMs} ms leaves no room after SHUTDOWN_TIMEOUT_MS ${config.shutdownTimeoutMs} ms (+${AFTER_DRAIN_MS} ms to stop Postgres)`,
    );
    const pm2 = createRequire(import.meta.url)(path.join(ROOT, 'ecosystem.config.cjs')) as {
      apps: Array<{ kill_timeout: number; kill_signal: string }>;
    };
    assert.equal(pm2.apps[0]!.kill_signal, one('Service', 'KillSignal'), 'the same signal as under pm2');
    assert.ok(stopMs >= pm2.apps[0]!.kill_timeout, `at least pm2's kill_timeout (${pm2.apps[0]!.kill_timeout} ms)`);
  });

  test('restarts a crashed server after a pause, and gives up on a crash loop', () => {
    assert.equal(one('Service', 'Restart'), 'on-failure', 'a clean stop exits 0 and stays stopped');
    assert.ok(timeSpanMs(one('Service', 'RestartSec') ?? '0.1') >= 1000, 'RestartSec of at least 1 s');
    const interval = timeSpanMs(one('Unit', 'StartLimitIntervalSec') ?? '10');
    const burst = Number(one('Unit', 'StartLimitBurst') ?? '5');
    assert.ok(Number.isInteger(burst) && burst > 0, 'StartLimitBurst');
    // The restarts a crash loop makes within the interval must be able to exceed the burst, or
    // the limit never stops it: burst restarts spaced RestartSec apart fit in the interval.
    assert.ok(
      burst * timeSpanMs(one('Service', 'RestartSec')!) < interval,
      'StartLimitIntervalSec longer than StartLimitBurst restarts',
    );
    assert.match(
      one('Service', 'ExecStart') ?? '',
      /\bnode \S*dist\/src\/main\.js$/,
      'runs the built server directly (no npm in between to swallow signals)',
    );
    assert.equal(one('Install', 'WantedBy'), 'multi-user.target');
  });

  test('systemd-analyze verify accepts it', (t) => {
    const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
    if (analyze.error) {
      // .ci/run installs it; by hand a machine without systemd skips (the checks above still run).
      assert.ok(process.env.CI !== 'true', 'systemd-analyze is missing under CI=true (apt-get install systemd)');
      t.skip('systemd-analyze is not installed (apt-get install systemd)');
      return;
    }
    // The same unit, with this machine's node: verify checks that ExecStart's binary exists.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'systemd-unit-'));
    try {
      const copy = path.join(dir, 'triggers-api.service');
      fs.writeFileSync(copy, text.replace(/^ExecStart=\S+/m, `ExecStart=${process.execPath}`));
      const result = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8', timeout: 30_000 });
      // Unknown keys and bad values are warnings with exit code 0: any line about the unit fails.
      const complaints = `${result.stdout}${result.stderr}`
        .split('\n')
        .filter((line) => line.includes('triggers-api.service'));
      assert.equal(result.status, 0, `systemd-analyze verify failed:\n${result.stdout}${result.stderr}`);
      assert.deepEqual(complaints, [], 'systemd-analyze verify warnings');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
