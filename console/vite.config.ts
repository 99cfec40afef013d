import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

/**
 * The console (API.md §9) is built into dist/console, which the server reads at start and serves
 * at /console (src/console/). Everything it needs is bundled: no CDN, nothing fetched at run time
 * but the API. JSX is Preact's.
 */
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/console/',
  logLevel: 'warn',
  build: {
    outDir: fileURLToPath(new URL('../dist/console', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    // The polyfill is a script of its own; modern browsers preload modules natively.
    modulePreload: { polyfill: false },
    // Inline assets would be data: URLs in the stylesheet; keep every asset a file.
    assetsInlineLimit: 0,
  },
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  // `npx vite console` serves the console with live reload at :5173 over a server on :8080
  // (TRIGGERS_URL to use another); the built console needs none of this.
  server: {
    proxy: { '/v1': process.env.TRIGGERS_URL ?? 'http://127.0.0.1:8080' },
  },
});
