import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { TestPostgres } from './helpers/postgres.js';
import { requirePromtool } from './helpers/promtool.js';
import { TestServer } from './helpers/server.js';

/*
 * The operations kit (deploy/): the Grafana dashboard and the Prometheus alerting rules. They are
 * only useful if every query is valid PromQL and names metrics the server really exports, so the
 * names are checked against a live server's /metrics, not against a list kept by hand.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DASHBOARD = path.join(ROOT, 'deploy/grafana/triggers-api.json');
const ALERTS = path.join(ROOT, 'deploy/prometheus/alerts.yml');
const ALERT_TESTS = path.join(ROOT, 'deploy/prometheus/alerts.test.yml');
const MONITORING = path.join(ROOT, 'docs/MONITORING.md');

// Written by Prometheus itself for every scrape, not by the server.
const PROMETHEUS_SERIES = new Set(['up']);
// Values for the Grafana variables when a dashboard query is checked as plain PromQL.
const GRAFANA_VARIABLES: Record<string, string> = {
  __rate_interval: '5m',
  __interval: '1m',
  __range: '1h',
  job: 'triggers-api',
  instance: '.*',
};

/* ---------- PromQL: metric names in an expression ---------- */

const AGGREGATIONS = new Set([
  'sum',
  'min',
  'max',
  'avg',
  'group',
  'stddev',
  'stdvar',
  'count',
  'count_values',
  'bottomk',
  'topk',
  'quantile',
  'limitk',
  'limit_ratio',
]);
const LABEL_LIST_KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
const KEYWORDS = new Set([...LABEL_LIST_KEYWORDS, 'bool', 'offset', 'and', 'or', 'unless', 'inf', 'nan']);

// Strings, label matchers {…} (which may hold quoted braces), ranges […], comments, numbers and
// durations (5m, 0.99, 1e3, 1h30m), identifiers, and any other single character.
const TOKEN =
  /"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`|\{(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^}"'])*\}|\[[^\]]*\]|#[^\n]*|(\d+(?:\.\d+)?(?:e[+-]?\d+)?[a-z]*)|([a-zA-Z_:][a-zA-Z0-9_:]*)|(\S)/g;

/**
 * Names of the metrics an expression reads: identifiers that are not functions (followed by
 * "("), aggregations, keywords, or label names in by/without/on/ignoring/group_* lists.
 */
function metricNames(expr: string): Set<string> {
  const tokens: Array<{ identifier?: string; char?: string }> = [];
  for (const match of expr.matchAll(TOKEN)) {
    if (match[2] !== undefined) tokens.push({ identifier: match[2] });
    else if (match[3] !== undefined) tokens.push({ char: match[3] });
  }
  const names = new Set<string>();
  for (let i = 0; i < tokens.length; i++) {
    const identifier = tokens[i]!.identifier;
    if (identifier === undefined) continue;
    if (LABEL_LIST_KEYWORDS.has(identifier) && tokens[i + 1]?.char === '(') {
      while (i < tokens.length && tokens[i]!.char !== ')') i++;
      continue;
    }
    if (KEYWORDS.has(identifier) || AGGREGATIONS.has(identifier) || tokens[i + 1]?.char === '(') continue;
    names.add(identifier);
  }
  return names;
}

/* ---------- the files ---------- */

interface Query {
  where: string;
  expr: string;
}

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type: string; uid: string };
  targets?: Array<{ refId: string; expr: string; datasource?: { type: string; uid: string } }>;
  panels?: Panel[];
  fieldConfig?: { defaults?: { unit?: string } };
}

interface Dashboard {
  schemaVersion: number;
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: Array<{ name: string; type: string; query: unknown }> };
}

const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8')) as Dashboard;

function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((panel) => [panel, ...allPanels(panel.panels ?? [])]);
}

/** Every PromQL expression of the dashboard, Grafana variables replaced by plausible values. */
function dashboardQueries(): Query[] {
  const queries: Query[] = [];
  for (const panel of allPanels(dashboard.panels)) {
    for (const target of panel.targets ?? [])
      queries.push({ where: `panel "${panel.title}" ${target.refId}`, expr: withVariables(target.expr) });
  }
  // A variable's label_values(selector, label): the selector is PromQL. The query is kept as a
  // string, the form every Grafana version reads (newer ones convert it for their editor).
  for (const variable of dashboard.templating.list) {
    if (variable.type !== 'query') continue;
    const selector =
      typeof variable.query === 'string' ? /^label_values\((.*),\s*\w+\)$/.exec(variable.query)?.[1] : undefined;
    assert.ok(
      selector,
      `variable ${variable.name}: expected "label_values(selector, label)", got ${JSON.stringify(variable.query)}`,
    );
    queries.push({ where: `variable ${variable.name}`, expr: withVariables(selector) });
  }
  return queries;
}

function withVariables(expr: string): string {
  return expr.replace(/\$\{?(\w+)\}?/g, (_, name: string) => {
    const value = GRAFANA_VARIABLES[name];
    assert.ok(value !== undefined, `unknown Grafana variable $${name} in ${expr}`);
    return value;
  });
}

interface AlertRule {
  name: string;
  text: string;
  expr: string;
}

/**
 * The alerting rules of a rules file, read line by line: each `- alert:` item up to the next one,
 * and its `expr:` (one line, or a `|`/`>` block). Enough for the file's own style; anything else
 * fails loudly here instead of being half read.
 */
function alertRules(text: string): AlertRule[] {
  const lines = text.split('\n');
  const starts = lines.flatMap((line, index) => (/^\s*- alert: /.test(line) ? [index] : []));
  return starts.map((start, n) => {
    const block = lines.slice(start, starts[n + 1] ?? lines.length);
    const name = /- alert: (\w+)\s*$/.exec(block[0]!)?.[1];
    assert.ok(name, `unreadable alert line: ${block[0]}`);
    const exprIndex = block.findIndex((line) => /^\s*expr:/.test(line));
    assert.ok(exprIndex > 0, `${name} has no expr`);
    const [, indent, value] = /^(\s*)expr:\s*(.*)$/.exec(block[exprIndex]!)!;
    let expr = value!;
    if (/^[|>][+-]?$/.test(expr)) {
      const body: string[] = [];
      for (const line of block.slice(exprIndex + 1)) {
        if (line.trim() !== '' && line.length - line.trimStart().length <= indent!.length) break;
        body.push(line.trim());
      }
      expr = body.join('\n').trim();
    } else {
      assert.doesNotMatch(expr, /^["']/, `${name}: a quoted expr; write it plain or as a block`);
    }
    return { name, text: block.join('\n'), expr };
  });
}

const rules = alertRules(fs.readFileSync(ALERTS, 'utf8'));

function runPromtool(promtool: string, args: string[], cwd = ROOT) {
  const result = spawnSync(promtool, args, { cwd, encoding: 'utf8' });
  return { ok: result.status === 0, output: `${result.stdout}${result.stderr}` };
}

/** Names from the `# TYPE` lines, with the series a histogram or summary is written as. */
function exportedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const match of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name, type] = match as unknown as [string, string, string];
    names.add(name);
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(name + suffix);
    if (type === 'summary') for (const suffix of ['_sum', '_count']) names.add(name + suffix);
  }
  return names;
}

/* ---------- tests ---------- */

describe('PromQL metric name reader', () => {
  test('keeps metric names, drops functions, keywords, label names, strings and durations', () => {
    const expr =
      'histogram_quantile(0.99, sum by (job, le) (rate(a_seconds_bucket{route=~"POST /v1/x{y}", le!="1"}[5m])))' +
      ' / on (job) group_left (zone) b_total offset 1h30m > bool 0.5 and vector(1) or sum without (x) (c:recorded)' +
      ' unless count(d{__x__="and"}[15m:1m])';
    assert.deepEqual([...metricNames(expr)].sort(), ['a_seconds_bucket', 'b_total', 'c:recorded', 'd']);
  });
});

describe('Prometheus alerting rules (deploy/prometheus)', () => {
  test('promtool check rules and promtool test rules pass', (t) => {
    const promtool = requirePromtool(t, 'rule checks');
    if (!promtool) return;
    const check = runPromtool(promtool, ['check', 'rules', ALERTS]);
    assert.ok(check.ok, `promtool check rules failed:\n${check.output}`);
    // Relative rule_files in the test file resolve against its own folder.
    const unitTests = runPromtool(promtool, ['test', 'rules', path.basename(ALERT_TESTS)], path.dirname(ALERT_TESTS));
    assert.ok(unitTests.ok, `promtool test rules failed:\n${unitTests.output}`);
  });

  test('every alert has for, a severity, summary, description and a runbook section in docs/MONITORING.md', () => {
    assert.ok(rules.length >= 10, `only ${rules.length} alerts read from ${ALERTS}`);
    const monitoring = fs.readFileSync(MONITORING, 'utf8');
    for (const rule of rules) {
      assert.match(rule.text, /^\s*for: \d+[smh]\s*$/m, `${rule.name}: for`);
      assert.match(rule.text, /^\s*severity: (critical|warning)\s*$/m, `${rule.name}: severity label`);
      assert.match(rule.text, /^\s*summary: \S/m, `${rule.name}: summary`);
      assert.match(rule.text, /^\s*description: \S/m, `${rule.name}: description`);
      assert.match(
        rule.text,
        new RegExp(`^\\s*runbook: docs/MONITORING\\.md#${rule.name.toLowerCase()}\\s*$`, 'm'),
        `${rule.name}: runbook`,
      );
      assert.match(
        monitoring,
        new RegExp(`^### ${rule.name}$`, 'm'),
        `docs/MONITORING.md has no section "### ${rule.name}"`,
      );
    }
  });

  test('the unit tests make every alert fire, and check cases where it must not', () => {
    const firing = new Map<string, number>();
    let silent = 0;
    let alertname = '';
    const lines = fs.readFileSync(ALERT_TESTS, 'utf8').split('\n');
    for (const [index, line] of lines.entries()) {
      if (/alertname: \w+, exp_alerts: \[\]/.test(line)) silent++;
      const name = /alertname: (\w+)/.exec(line)?.[1];
      if (name) alertname = name;
      if (/^\s*exp_alerts: \[\]\s*$/.test(line)) silent++;
      if (/^\s*exp_alerts:\s*$/.test(line) && /^\s*- exp_labels:/.test(lines[index + 1] ?? ''))
        firing.set(alertname, (firing.get(alertname) ?? 0) + 1);
    }
    const neverFired = rules.map((rule) => rule.name).filter((name) => !firing.has(name));
    assert.deepEqual(neverFired, [], 'alerts without a case where they fire');
    assert.ok(silent >= rules.length, `only ${silent} cases where an alert must stay silent`);
  });
});

describe('Grafana dashboard (deploy/grafana/triggers-api.json)', () => {
  test('is an importable dashboard: schema version, data source variable, panels with targets, unique ids, no overlap', () => {
    assert.equal(typeof dashboard.schemaVersion, 'number');
    assert.ok(dashboard.schemaVersion >= 36, `schemaVersion ${dashboard.schemaVersion}`);
    assert.ok(dashboard.uid && dashboard.title);
    const datasource = dashboard.templating.list.find((variable) => variable.type === 'datasource');
    assert.ok(datasource, 'a data source template variable');
    assert.equal(datasource.query, 'prometheus');
    for (const name of ['job', 'instance'])
      assert.ok(
        dashboard.templating.list.some((variable) => variable.name === name),
        `variable ${name}`,
      );

    const panels = allPanels(dashboard.panels);
    const ids = panels.map((panel) => panel.id);
    assert.ok(
      ids.every((id) => Number.isInteger(id) && id > 0),
      'panel ids are positive integers',
    );
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
    const rows = panels.filter((panel) => panel.type === 'row');
    assert.ok(rows.length >= 6, 'rows for the areas');
    for (const panel of panels) {
      const { x, y, w, h } = panel.gridPos;
      assert.ok(
        x >= 0 && w > 0 && x + w <= 24 && y >= 0 && h > 0,
        `panel "${panel.title}": gridPos ${JSON.stringify(panel.gridPos)}`,
      );
      assert.ok(panel.title, `panel ${panel.id} has a title`);
      if (panel.type === 'row') continue;
      assert.deepEqual(
        panel.datasource,
        { type: 'prometheus', uid: `\${${datasource.name}}` },
        `panel "${panel.title}": data source`,
      );
      assert.ok(panel.fieldConfig?.defaults?.unit, `panel "${panel.title}": unit`);
      assert.ok(panel.targets && panel.targets.length > 0, `panel "${panel.title}": targets`);
      assert.equal(
        new Set(panel.targets.map((target) => target.refId)).size,
        panel.targets.length,
        `panel "${panel.title}": refIds unique`,
      );
      for (const target of panel.targets) {
        assert.ok(target.expr?.trim(), `panel "${panel.title}" ${target.refId}: expr`);
        if (target.datasource)
          assert.deepEqual(target.datasource, panel.datasource, `panel "${panel.title}" ${target.refId}: data source`);
      }
    }
    // Panels on the same rows must not overlap.
    const placed = panels.map((panel) => panel.gridPos);
    for (const [i, a] of placed.entries()) {
      for (const b of placed.slice(i + 1)) {
        const overlap = a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
        assert.ok(!overlap, `panels overlap at ${JSON.stringify(a)} and ${JSON.stringify(b)}`);
      }
    }
  });

  test('every query is valid PromQL (promtool check rules on them as recording rules)', (t) => {
    const promtool = requirePromtool(t, 'PromQL check of the dashboard');
    if (!promtool) return;
    const queries = dashboardQueries();
    assert.ok(queries.length >= 40, `only ${queries.length} queries read`);
    // JSON strings are YAML double-quoted scalars: no YAML writer needed.
    const recording = queries
      .map((query, index) => `      - record: dashboard:query_${index}\n        expr: ${JSON.stringify(query.expr)}\n`)
      .join('');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ops-kit-'));
    try {
      const file = path.join(dir, 'dashboard-queries.yml');
      fs.writeFileSync(file, `groups:\n  - name: dashboard\n    rules:\n${recording}`);
      const check = runPromtool(promtool, ['check', 'rules', file]);
      const named = check.output.replace(
        /dashboard:query_(\d+)/g,
        (match, index: string) => `${match} (${queries[Number(index)]!.where})`,
      );
      assert.ok(check.ok, `a dashboard query is not valid PromQL:\n${named}`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('metric names used by the dashboard and the alerts', () => {
  let pg: TestPostgres;
  let server: TestServer;

  before(async () => {
    pg = await TestPostgres.start();
    // The cluster (primary, an HTTP worker, the delivery worker) for the aggregated /metrics.
    server = await TestServer.start({ databaseUrl: await pg.createDatabase('ops_kit'), workers: 1 });
  });

  after(async () => {
    await server?.stop();
    await pg?.stop();
  });

  test('are all exported by a running server', async () => {
    const response = await fetch(server.url + '/metrics');
    assert.equal(response.status, 200);
    const exported = exportedNames(await response.text());
    assert.ok(
      exported.has('events_ingested_total') && exported.has('process_cpu_seconds_total'),
      "the scrape has the server's metrics",
    );

    const queries = [...dashboardQueries(), ...rules.map((rule) => ({ where: `alert ${rule.name}`, expr: rule.expr }))];
    const used = new Set<string>();
    const unknown: string[] = [];
    for (const query of queries) {
      for (const name of metricNames(query.expr)) {
        used.add(name);
        if (!exported.has(name) && !PROMETHEUS_SERIES.has(name)) unknown.push(`${name} (${query.where})`);
      }
    }
    assert.deepEqual(unknown, [], 'metrics the server does not export');
    // The reader found the names, not nothing: the areas the kit must cover are all there.
    for (const name of [
      'event_ingestion_latency_seconds_bucket',
      'http_requests_total',
      'event_queue_size',
      'db_operations_latency_seconds_bucket',
      'db_operation_errors_total',
      'cache_lookups_total',
      'auth_latency_seconds_bucket',
      'rate_limit_check_latency_seconds_bucket',
      'webhook_deliveries_total',
      'webhook_delivery_lag_seconds_bucket',
      'webhook_deliveries_in_flight',
      'validation_errors_total',
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_p99_seconds',
      'metrics_scrape_workers_missing',
      'up',
      'event_queue_limit',
      'http_unavailable_total',
      'webhook_endpoints_disabled',
      'webhook_oldest_waiting_delivery_age_seconds',
      'worker_restarts_total',
    ]) {
      assert.ok(used.has(name), `nothing uses ${name}`);
    }
  });
});
