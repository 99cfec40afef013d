import { fmt, say } from './output.js';
import { rows, type Row } from './results.js';

function perDelivery(seconds: number, deliveries: number): number {
  return deliveries > 0 ? (seconds * 1e6) / deliveries : NaN;
}

function printRow(row: Row): void {
  const unit = row.scenario.startsWith('baseline') ? 'requests' : 'deliveries';
  const parts = [
    `${row.scenario}: ${fmt(row.deliveries)} ${unit} in ${fmt(row.seconds, 2)} s = ${fmt(row.perSecond)}/s`,
  ];
  if (row.ratio !== undefined) parts.push(`${row.ratioLabel ?? 'ratio'} ${fmt(row.ratio, 2)}`);
  if (row.lag)
    parts.push(
      `lag ms p50 ${fmt(row.lag.p50, 1)} p95 ${fmt(row.lag.p95, 1)} p99 ${fmt(row.lag.p99, 1)} max ${fmt(row.lag.max, 1)}`,
    );
  say(`  ${parts.join(', ')}${row.ok ? '' : '  ** FAILED **'}`);
  if (row.cpu) {
    const c = row.cpu;
    say(
      `  cpu s: delivery ${fmt(c.delivery, 2)}, http ${fmt(c.http, 2)}, postgres ${fmt(c.postgres, 2)}, receiver ${fmt(c.receiver, 2)}, bench ${fmt(c.bench, 2)}, primary ${fmt(c.primary, 2)}${c.other ? `, other ${fmt(c.other, 2)}` : ''}; elsewhere on the machine ${fmt(c.elsewhere, 2)}`,
    );
  }
  if (row.pg) {
    say(
      `  postgres: ${fmt(row.pg.writes)} webhook/delivery row writes (${fmt(row.pg.writes / row.deliveries, 2)}/delivery), ${fmt(row.pg.walBytes)} WAL bytes (${fmt(row.pg.walBytes / row.deliveries)}/delivery), ${fmt(row.pg.eventInserts)} event inserts; counters settled after ${fmt(row.pg.settleMs / 1000, 1)} s`,
    );
  }
  for (const note of row.notes) say(`  ${note}`);
}

/** Keeps the row for the closing table and prints it now. */
export function recordRow(row: Row): void {
  rows.push(row);
  printRow(row);
}

/** The closing table: every row beside the better of the two baseline runs. */
export function printTable(rows: Row[]): void {
  const baselines = rows.filter((r) => r.scenario.startsWith('baseline'));
  const reference = Math.max(...baselines.map((r) => r.perSecond));
  const header = [
    'scenario',
    'deliveries',
    'deliveries/s',
    'baseline req/s',
    'ratio',
    'lag p50/p99 ms',
    'cpu µs/delivery (delivery | http | postgres | receiver | bench)',
    'pg writes/delivery',
    'WAL B/delivery',
    'cpu s elsewhere',
    'ok',
  ];
  const lines = rows.map((r) => {
    const isBaseline = r.scenario.startsWith('baseline');
    const c = r.cpu;
    const cpu = c
      ? [c.delivery, c.http, c.postgres, c.receiver, c.bench]
          .map((sec) => (isBaseline && sec === 0 ? '-' : fmt(perDelivery(sec, r.deliveries))))
          .join(' | ')
      : '-';
    // The latency scenario is paced by its sender: its rate is not a throughput.
    const ratio =
      r.ratio !== undefined
        ? `${fmt(r.ratio, 2)} ${r.ratioLabel ?? ''}`.trim()
        : isBaseline || r.scenario === 'latency'
          ? '-'
          : fmt(r.perSecond / reference, 2);
    return [
      r.scenario,
      fmt(r.deliveries),
      fmt(r.perSecond),
      isBaseline || r.scenario === 'latency' ? '-' : fmt(reference),
      ratio,
      r.lag ? `${fmt(r.lag.p50, 1)} / ${fmt(r.lag.p99, 1)}` : '-',
      cpu,
      r.pg ? fmt(r.pg.writes / r.deliveries, 2) : '-',
      r.pg ? fmt(r.pg.walBytes / r.deliveries) : '-',
      c ? fmt(c.elsewhere, 1) : '-',
      r.ok ? 'yes' : 'NO',
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const render = (cells: string[]) =>
    cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  say('');
  say(render(header));
  for (const line of lines) say(render(line));
  say('');
  say(
    `ratio = deliveries/s ÷ baseline req/s, the better of the two baseline runs (isolation +hang+500: ÷ the healthy endpoint alone)`,
  );
  say("lag = arrival − the answer (202, or the batch's 200) to its event; the first arrival of each event counts");
  say(
    'cpu µs/delivery over the scenario (from the first POST to the last arrival); baseline rows: per request, "bench" = the undici client',
  );
  say(
    "pg writes = n_tup_ins+upd+del of the webhook*/delivery* tables; per delivery = ÷ the healthy endpoints' distinct deliveries",
  );
  say('  (isolation +hang+500: the attempts to the hanging and failing endpoints are in the numerators only)');
  say(
    'cpu s elsewhere = machine busy time outside every measured process during the scenario (other load on a shared machine)',
  );
}
