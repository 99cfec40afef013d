/**
 * The console's files and the key route it signs in with, without a browser (npm test): the page
 * and its assets under the Content-Security-Policy of API.md §9, a build without the console, and
 * GET /v1/key. The console itself, in Chromium: console*.test.ts (`npm run test:browser`).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { loadConsoleFiles } from '../src/console/files.js';
import { CONSOLE_CSP, consoleRoutes } from '../src/console/routes.js';
import { ApiError } from '../src/errors.js';
import { call, createOrgWithKey } from './helpers/api.js';
import { InProcessServer } from './helpers/in-process.js';
import { TestPostgres } from './helpers/postgres.js';

let pg: TestPostgres;
let server: InProcessServer;
let base: string;

before(async () => {
  pg = await TestPostgres.shared();
  server = await InProcessServer.start({ databaseUrl: await pg.createDatabase('console_files') });
  base = server.url;
});

after(async () => {
  await server?.stop();
  await pg?.stop();
});

describe('the console files and the key route', () => {
  test('GET /console is the built page under a strict Content-Security-Policy', async () => {
    const response = await fetch(`${base}/console`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/html/);
    assert.equal(response.headers.get('content-security-policy'), CONSOLE_CSP);
    assert.match(CONSOLE_CSP, /script-src 'self'(;|$)/);
    assert.match(CONSOLE_CSP, /connect-src 'self'(;|$)/);
    assert.doesNotMatch(CONSOLE_CSP, /unsafe-inline|unsafe-eval|\*/);
    assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(response.headers.get('cache-control'), 'no-cache');
    const html = await response.text();
    assert.doesNotMatch(html, /<script>(?!<\/)|<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script');
    assert.doesNotMatch(html, /\bstyle=/, 'no inline style');
    assert.doesNotMatch(html, /https?:\/\//, 'nothing from another origin');

    const assets = [...html.matchAll(/(?:src|href)="(\/console\/assets\/[^"]+)"/g)].map((match) => match[1]!);
    assert.ok(assets.some((asset) => asset.endsWith('.js')) && assets.some((asset) => asset.endsWith('.css')));
    for (const asset of assets) {
      const file = await fetch(base + asset);
      assert.equal(file.status, 200, asset);
      assert.equal(file.headers.get('cache-control'), 'public, max-age=31536000, immutable');
      assert.equal(file.headers.get('content-security-policy'), CONSOLE_CSP);
      assert.match(file.headers.get('content-type') ?? '', asset.endsWith('.js') ? /^text\/javascript/ : /^text\/css/);
    }
    const missing = await call(base, 'GET', '/console/assets/nothing-here.js');
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.code, 'not_found');
    const traversal = await fetch(`${base}/console/assets/..%2f..%2fpackage.json`);
    assert.equal(traversal.status, 404);
  });

  test('a server whose build has no console says how to build it', async () => {
    assert.equal(loadConsoleFiles('/nonexistent/console'), null);
    const [page] = consoleRoutes(null);
    assert.throws(
      () => page!.handle({} as never, undefined),
      (error: unknown) =>
        error instanceof ApiError && error.code === 'not_found' && /npm run build/.test(error.message),
    );
  });

  test('GET /v1/key tells a key its org and scopes, and nothing of another key', async () => {
    const { key, keyId, orgId } = await createOrgWithKey(base, { name: 'key route org', scopes: ['events:read'] });
    const response = await call(base, 'GET', '/v1/key', { key });
    assert.equal(response.status, 200, response.text);
    assert.equal(response.body.id, keyId);
    assert.deepEqual(response.body.org, { id: orgId, name: 'key route org' });
    assert.deepEqual(response.body.scopes, ['events:read']);
    assert.equal(response.body.env, 'live');
    assert.equal(key.split('_')[2], response.body.kid);
    assert.equal(JSON.stringify(response.body).includes(key.split('_')[3]!), false, 'never the secret');
    const refused = await call(base, 'GET', '/v1/key', { key: `${key}x` });
    assert.equal(refused.status, 401);
  });
});
