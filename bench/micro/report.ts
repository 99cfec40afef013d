import { Bench } from 'tinybench';

export interface Comparison {
  name: string;
  baseline: string;
  candidates: string[];
}

/**
 * Runs a tinybench suite and prints each task's mean time and ops/s, with the ratio of each
 * candidate to its baseline measured in the same run (ratio > 1: slower than the baseline).
 */
export async function runAndReport(
  title: string,
  bench: Bench,
  comparison: Comparison,
): Promise<Array<Record<string, unknown>>> {
  await bench.run();
  const byName = new Map(bench.tasks.map((task) => [task.name, task]));
  const meanOf = (name: string) => {
    const result = byName.get(name)?.result as { latency?: { mean: number }; mean?: number } | undefined;
    return result?.latency?.mean ?? result?.mean ?? NaN;
  };
  const base = meanOf(comparison.baseline);
  process.stdout.write(
    `\n## ${title}\n\n| task | mean µs | ops/s | ratio to "${comparison.baseline}" |\n|---|---|---|---|\n`,
  );
  const rows: Array<Record<string, unknown>> = [];
  for (const name of [comparison.baseline, ...comparison.candidates]) {
    const mean = meanOf(name);
    const ratio = mean / base;
    rows.push({ suite: title, task: name, mean_us: mean * 1000, ops_per_s: 1000 / mean, ratio });
    process.stdout.write(
      `| ${name} | ${(mean * 1000).toFixed(2)} | ${Math.round(1000 / mean)} | ${ratio.toFixed(2)} |\n`,
    );
  }
  return rows;
}
