import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import {
  explainNoBuild,
  refusalHeadline,
  selectUwsBuild,
  type BinaryLoader,
  type Runtime,
  type UwsBuild,
} from './uws-builds.js';

// Both builds export the same API for what we use; the types come from the first one.
export type Uws = typeof import('uWebSockets.js');
export type HttpResponse = import('uWebSockets.js').HttpResponse;
export type HttpRequest = import('uWebSockets.js').HttpRequest;
export type TemplatedApp = import('uWebSockets.js').TemplatedApp;

/** No uWebSockets.js native binary loads here; `message` is the whole explanation for the user. */
export class UwsUnavailableError extends Error {
  readonly code = 'UWS_UNAVAILABLE';
}

const require = createRequire(import.meta.url);
let loaded: { uws: Uws; build: UwsBuild; fileName: string } | undefined;

/**
 * The uWebSockets.js native binary for this Node, chosen once per process (src/http/uws-builds.ts).
 * The `.node` file is loaded directly, never through the package's JS entry: the trufflesuite one
 * silently falls back to a slow `node:http` emulation when its binary does not load, and we would
 * rather not start than serve at a fraction of the speed unnoticed. Throws UwsUnavailableError.
 */
export function loadUws(): Uws {
  return loadedBuild().uws;
}

/** Which build loadUws() runs on, for logs and tests. */
export function loadedUwsBuild(): { label: string; packageName: string; fileName: string } {
  const { build, fileName } = loadedBuild();
  return { label: build.label, packageName: build.packageName, fileName };
}

function loadedBuild(): NonNullable<typeof loaded> {
  if (loaded) return loaded;
  const runtime = currentRuntime();
  if (process.env.UWS_USE_FALLBACK) {
    throw new UwsUnavailableError(
      `${refusalHeadline(runtime)}\nUWS_USE_FALLBACK is set, which asks for the slow JS fallback; this server does not run on it. Unset UWS_USE_FALLBACK.`,
    );
  }
  const selection = selectUwsBuild(runtime, nodeLoader);
  if (!selection.ok) throw new UwsUnavailableError(explainNoBuild(runtime, selection.attempts));
  loaded = { uws: selection.exports as Uws, build: selection.build, fileName: selection.fileName };
  return loaded;
}

export function currentRuntime(): Runtime {
  return {
    nodeVersion: process.version,
    abi: process.versions.modules,
    platform: process.platform,
    arch: process.arch,
    libc: detectLibc(),
  };
}

interface ReportHeader {
  glibcVersionRuntime?: string;
}
interface Report {
  header: ReportHeader;
  sharedObjects?: string[];
}

function detectLibc(): string | null {
  if (process.platform !== 'linux') return null;
  const report = process.report.getReport() as unknown as Report;
  if (report.header.glibcVersionRuntime) return `glibc ${report.header.glibcVersionRuntime}`;
  return report.sharedObjects?.some((file) => file.includes('musl')) ? 'musl' : 'an unknown libc';
}

/** The real disk and dlopen, through the packages' folders in node_modules. */
const nodeLoader: BinaryLoader = {
  listBinaries(build) {
    const dir = binaryDir(build);
    if (dir === null) return null;
    try {
      return fs.readdirSync(dir);
    } catch {
      return [];
    }
  },
  load(build, fileName) {
    // require() of an absolute path: dlopen, and a second load returns the same module.
    return require(path.join(binaryDir(build)!, fileName));
  },
};

function binaryDir(build: UwsBuild): string | null {
  let entry: string;
  try {
    entry = require.resolve(build.packageName);
  } catch {
    return null;
  }
  return path.join(packageRoot(entry), build.binaryDir);
}

// The nearest folder with a package.json above the package's entry file: the packages' "exports"
// maps hide their package.json and .node files from require.resolve.
function packageRoot(entry: string): string {
  let dir = path.dirname(entry);
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) return path.dirname(entry);
    dir = parent;
  }
  return dir;
}
