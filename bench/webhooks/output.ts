export function say(line: string): void {
  process.stdout.write(line + '\n');
}

/** A figure for print: grouped thousands, `digits` decimals, '-' when there is none. */
export function fmt(n: number | undefined, digits = 0): string {
  if (n === undefined || !Number.isFinite(n)) return '-';
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}
