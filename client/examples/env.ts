/** Configuration of the example programs, read once at start; a bad value stops the program there. */

export function stringEnv(name: string, fallback?: string): string {
  const value = process.env[name];
  if (value !== undefined && value !== '') return value;
  if (fallback !== undefined) return fallback;
  throw new Error(`${name} is required`);
}

export function intEnv(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max)
    throw new Error(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  return value;
}

/** `TRIGGERS_BASE_URL` (default http://localhost:8080) and `TRIGGERS_API_KEY`, as createTriggersClient takes them. */
export function clientEnv(): { baseUrl: string; apiKey: string } {
  return { baseUrl: stringEnv('TRIGGERS_BASE_URL', 'http://localhost:8080'), apiKey: stringEnv('TRIGGERS_API_KEY') };
}

/** Runs an example's main: a failure prints one line, not a stack, and exits 1. */
export function run(name: string, main: () => Promise<number | void>): void {
  main().then(
    (code) => {
      process.exitCode = code ?? 0;
    },
    (error: unknown) => {
      // fetch's own message is only "fetch failed"; the reason (ECONNREFUSED, …) is its cause.
      const cause = error instanceof Error && error.cause instanceof Error ? ` (${error.cause.message})` : '';
      process.stderr.write(`${name}: ${error instanceof Error ? error.message : String(error)}${cause}\n`);
      process.exitCode = 1;
    },
  );
}
