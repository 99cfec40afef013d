import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';

/** One built file of the console, held in memory with what its answer needs. */
export interface ConsoleFile {
  body: string;
  contentType: string;
}

/** The console as built by `npm run build` (Vite, console/ → dist/console/): index.html and assets/. */
export interface ConsoleFiles {
  index: ConsoleFile;
  /** By file name under assets/ (Vite names them by content hash, so they never change). */
  assets: Map<string, ConsoleFile>;
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.json': 'application/json',
  '.map': 'application/json',
};

/** Where the build puts the console: dist/console beside dist/src (this file is dist/src/console/files.js). */
export const BUILT_CONSOLE_DIR = new URL('../../console/', import.meta.url).pathname;

function fileOf(path: string): ConsoleFile | null {
  const contentType = CONTENT_TYPES[extname(path)];
  if (contentType === undefined) return null; // nothing else is served, whatever the build leaves
  return { body: readFileSync(path, 'utf8'), contentType };
}

/**
 * Reads the built console once, at start: a handful of small text files, so every answer is a
 * string already in memory. Null when the console was not built (the server serves the API without it).
 */
export function loadConsoleFiles(dir: string = BUILT_CONSOLE_DIR): ConsoleFiles | null {
  let index: ConsoleFile | null;
  try {
    index = fileOf(join(dir, 'index.html'));
  } catch {
    return null;
  }
  if (index === null) return null;
  const assets = new Map<string, ConsoleFile>();
  const assetsDir = join(dir, 'assets');
  let names: string[] = [];
  try {
    names = readdirSync(assetsDir);
  } catch {
    // an index without assets is served as it is; its scripts will 404
  }
  for (const name of names) {
    const path = join(assetsDir, name);
    if (!statSync(path).isFile()) continue;
    const file = fileOf(path);
    if (file !== null) assets.set(name, file);
  }
  return { index, assets };
}
