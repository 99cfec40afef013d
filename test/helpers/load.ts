import fs from 'node:fs';
import http from 'node:http';

export interface LoadResult {
  /** Ids answered 202: each must be in the database. */
  accepted: string[];
  statuses: Map<number | string, number>;
}

/**
 * Keeps `concurrency` POST /v1/events loops going until `stop` resolves. Connection errors are
 * counted (by code) rather than thrown: these loads run while the server is being killed.
 */
export async function ingestUntil(
  base: string,
  key: string,
  concurrency: number,
  stop: Promise<unknown>,
): Promise<LoadResult> {
  const result: LoadResult = { accepted: [], statuses: new Map() };
  let stopped = false;
  void stop.then(() => {
    stopped = true;
  });
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const count = (status: number | string) => result.statuses.set(status, (result.statuses.get(status) ?? 0) + 1);
  let sequence = 0;
  const loop = async () => {
    while (!stopped) {
      const body = JSON.stringify({ type: 'load.test', payload: { n: sequence++, pad: 'x'.repeat(200) } });
      try {
        const { status, text } = await post(agent, `${base}/v1/events`, key, body);
        count(status);
        if (status === 202) result.accepted.push(JSON.parse(text).id);
      } catch (error) {
        count((error as NodeJS.ErrnoException).code ?? 'error');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  agent.destroy();
  return result;
}

function post(agent: http.Agent, url: string, key: string, body: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: 'POST',
        agent,
        headers: {
          authorization: `Bearer ${key}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => {
          text += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode!, text }));
        res.on('error', reject);
      },
    );
    req.setTimeout(15_000, () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', reject);
    req.end(body);
  });
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** A deadline for Promise.race: its timer does not keep the test file's process alive once the test is done. */
export const deadlineAfter = <T>(ms: number, value: T) =>
  new Promise<T>((resolve) => setTimeout(resolve, ms, value).unref());

/** Child pids of a process (Linux /proc), e.g. the primary's workers. */
export function childPids(pid: number): number[] {
  try {
    const tasks = fs.readdirSync(`/proc/${pid}/task`);
    const children = tasks.flatMap((task) =>
      fs.readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(/\s+/),
    );
    return children.filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** A pid's command line (to tell node workers from postgres). */
export function commandLineOf(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}
