/**
 * The last step of scripts/bench-compare.sh: reads the JSON of each bench:load run (DIR/before.N.out,
 * DIR/after.N.out) and prints, per scenario row of the full server, the median over rounds of
 * each side and the change. Rates are events per second (requests for single events), and the
 * ratio to the same run's baseline (bare uWS, raw COPY) is compared too: it cancels drift that
 * a run's baseline saw as well.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { LoadRow as Row } from './load-row.js';

const [dir, roundsText] = process.argv.slice(2);
const rounds = Number(roundsText);

function rowsOf(file: string): Row[] {
  const text = fs.readFileSync(file, 'utf8');
  return (JSON.parse(text.slice(text.indexOf('\n{') + 1)) as { rows: Row[] }).rows.filter((row) =>
    row.target.startsWith('full server'),
  );
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

const sides = { before: [] as Row[][], after: [] as Row[][] };
for (let i = 1; i <= rounds; i++) {
  for (const side of ['before', 'after'] as const) sides[side].push(rowsOf(path.join(dir!, `${side}.${i}.out`)));
}
const key = (row: Row) => `${row.scenario} ${row.connections ?? ''}`.trim();
const keys = [...new Set(sides.after.flat().map(key))];
console.log('\nmedian of', rounds, 'rounds each (before -> after, change):');
for (const name of keys) {
  const pick = (side: Row[][], field: (row: Row) => number | undefined) =>
    median(
      side
        .flat()
        .filter((row) => key(row) === name)
        .map(field)
        .filter((v): v is number => v !== undefined),
    );
  const rate = (row: Row) => row.events_per_s ?? row.rps;
  const [b, a] = [pick(sides.before, rate), pick(sides.after, rate)];
  const [rb, ra] = [pick(sides.before, (row) => row.ratio), pick(sides.after, (row) => row.ratio)];
  const pct = (x: number, y: number) => `${((y / x - 1) * 100).toFixed(1)}%`;
  console.log(
    `  ${name.padEnd(12)} events/s ${b.toFixed(0)} -> ${a.toFixed(0)} (${pct(b, a)}); ratio to baseline ${rb.toFixed(3)} -> ${ra.toFixed(3)} (${pct(rb, ra)})`,
  );
}
