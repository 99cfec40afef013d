import { createRequire } from 'node:module';

export type Uws = typeof import('uWebSockets.js');
export type HttpResponse = import('uWebSockets.js').HttpResponse;
export type HttpRequest = import('uWebSockets.js').HttpRequest;
export type TemplatedApp = import('uWebSockets.js').TemplatedApp;

/**
 * Loads uWebSockets.js and refuses to run on its pure-JS fallback. The package we install here
 * silently falls back to a slow `node:http` emulation when its native binary does not load (wrong
 * Node ABI, glibc); we would rather not start than serve at a fraction of the speed unnoticed.
 */
export function loadUws(): Uws {
  const require = createRequire(import.meta.url);
  const uws = require('uWebSockets.js') as Uws & { getParts?: unknown };
  const isNative = typeof uws.getParts === 'function' && String(uws.App).includes('[native code]');
  if (!isNative || process.env.UWS_USE_FALLBACK) {
    throw new Error(
      `uWebSockets.js native binary did not load for Node ${process.version} ` +
      `(${process.platform}-${process.arch}, ABI ${process.versions.modules}); refusing to start on the slow JS fallback`,
    );
  }
  return uws;
}
