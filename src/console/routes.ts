import { ApiError } from '../errors.js';
import type { RouteSpec } from '../http/router.js';
import type { Reply } from '../http/respond.js';
import type { RouteDoc } from '../openapi/operation.js';
import type { ConsoleFile, ConsoleFiles } from './files.js';

/**
 * The console's policy (API.md §9): its own scripts and styles only, API calls to this origin only,
 * no inline script or style, no framing, no forms posted anywhere, no referrer carrying a URL out.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const SECURITY_HEADERS = {
  'Content-Security-Policy': CONSOLE_CSP,
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'X-Frame-Options': 'DENY',
};

const CONSOLE_DOC: RouteDoc = {
  operationId: 'getConsole',
  summary: 'The web console',
  description:
    "A single-page app for one org (API.md §9), served from the files `npm run build` made. It loads without a key; every action is an API call with the key pasted at sign-in, kept in the tab's `sessionStorage` and sent as `Authorization: Bearer`. Served under a strict Content-Security-Policy (this origin's scripts and styles only, `connect-src 'self'`).",
  tag: 'Operations',
  responses: {
    200: { description: 'The console page.', mediaType: 'text/html', schema: { type: 'string' } },
  },
  errors: { 404: '`not_found`: the console was not built (`npm run build` builds it).' },
};

const ASSET_DOC: RouteDoc = {
  operationId: 'getConsoleAsset',
  summary: "A file of the web console's build",
  description: 'Scripts and styles of the console, named by their content hash and cached for a year.',
  tag: 'Operations',
  pathParameters: { file: { description: 'File name under the build’s assets/.', schema: { type: 'string' } } },
  responses: {
    200: { description: 'The file.', mediaType: 'text/javascript', schema: { type: 'string' } },
  },
  errors: { 404: '`not_found`: no such file.' },
};

function answer(file: ConsoleFile, cacheControl: string): Reply {
  return {
    status: 200,
    body: file.body,
    headers: { ...SECURITY_HEADERS, 'Content-Type': file.contentType, 'Cache-Control': cacheControl },
  };
}

function notBuilt(): ApiError {
  return new ApiError('not_found', 'The console was not built: run `npm run build`, then start the server again.');
}

/** GET /console and its assets, from files read once at start (src/console/files.ts); null: not built. */
export function consoleRoutes(files: ConsoleFiles | null): RouteSpec[] {
  return [
    {
      method: 'get',
      path: '/console',
      auth: 'public',
      doc: CONSOLE_DOC,
      handle() {
        if (files === null) throw notBuilt();
        // The page names its assets by hash, so it must be fetched again to see a new build.
        return answer(files.index, 'no-cache');
      },
    },
    {
      method: 'get',
      path: '/console/assets/:file',
      auth: 'public',
      doc: ASSET_DOC,
      handle(ctx) {
        const file = files?.assets.get(ctx.params[0]!);
        if (file === undefined) throw new ApiError('not_found', 'No such console file.');
        return answer(file, 'public, max-age=31536000, immutable');
      },
    },
  ];
}
