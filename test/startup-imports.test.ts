import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

/**
 * What a process loads at start is CPU on every start: the primary, each HTTP worker and each
 * delivery process, and every server a test boots (most of the test suite's CPU, docs/PERFORMANCE.md
 * "Test suite time"). ioredis (~0.15 CPU-s a process) is loaded only when REDIS_URL asks for a
 * client (src/redis-client.ts). Checked in a fresh process, importing what src/main.ts imports
 * for each role.
 */

const DIST_SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src');
const ROLE_MODULES = [
  'cluster/primary.js',
  'metrics/cluster.js',
  'cluster/http-worker.js',
  'cluster/delivery-worker.js',
];

/** Runs `body` as an ES module in a new Node process after importing every role's modules; returns its stdout. */
function inFreshProcess(body: string): string {
  const script = `
    import { createRequire } from 'node:module';
    const require = createRequire(import.meta.url);
    for (const module of ${JSON.stringify(ROLE_MODULES.map((module) => path.join(DIST_SRC, module)))}) await import(module);
    const ioredisLoaded = () => Object.keys(require.cache).some((file) => file.includes('/node_modules/ioredis/'));
    ${body}`;
  const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(result.status, 0, result.stderr);
  return result.stdout.trim();
}

test("without REDIS_URL no process loads ioredis: importing every role's modules leaves it unloaded", () => {
  assert.equal(inFreshProcess('console.log(ioredisLoaded());'), 'false');
});

test('a Redis client asked for loads it then, and is a real ioredis client', () => {
  const redisClient = path.join(DIST_SRC, 'redis-client.js');
  const out = inFreshProcess(`
    const before = ioredisLoaded();
    const { newRedis } = await import(${JSON.stringify(redisClient)});
    const client = newRedis('redis://127.0.0.1:1', { lazyConnect: true });
    const real = client instanceof require('ioredis').Redis;
    console.log(JSON.stringify({ before, after: ioredisLoaded(), status: client.status, real }));
    client.disconnect();`);
  assert.deepEqual(JSON.parse(out), { before: false, after: true, status: 'wait', real: true });
});
