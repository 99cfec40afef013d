/**
 * Which uWebSockets.js build this process runs on. We install two builds because neither covers
 * every Node we support (README.md, "Supported platforms"); at start the first one whose native
 * binary for this Node ABI, platform and arch exists and loads wins. The loading is passed in, so
 * this module is pure and the choice is unit-tested (test/uws-build.test.ts).
 */

/** One uWebSockets.js package we install. */
export interface UwsBuild {
  /** The name in package.json's dependencies, which is also what `require` resolves. */
  readonly packageName: string;
  /** How messages name it. */
  readonly label: string;
  /** Folder of its `uws_<platform>_<arch>_<abi>.node` files, relative to the package's root. */
  readonly binaryDir: string;
}

/**
 * Preference order. The trufflesuite fork first: it is what Node 20 on glibc 2.27-2.37 (Debian 12)
 * has always run. Linux binaries measured with `objdump -T ... | grep GLIBC_`: the trufflesuite
 * ones need GLIBC_2.27 (logf), the btc-vision ones GLIBC_2.38 (__isoc23_sscanf/strtol/strtoul).
 */
export const UWS_BUILDS: readonly UwsBuild[] = [
  {
    packageName: 'uWebSockets.js',
    label: 'uWebSockets.js (@trufflesuite/uws-js-unofficial 20.30.0)',
    binaryDir: 'binaries',
  },
  { packageName: '@btc-vision/uwebsockets.js', label: '@btc-vision/uwebsockets.js 20.57.0', binaryDir: '.' },
];

/** What works, for the message printed when nothing loads. README.md says the same. */
export const SUPPORTED_PLATFORMS: readonly string[] = [
  'Node 20 on Linux with glibc >= 2.27 (uWebSockets.js, the trufflesuite build)',
  'Node 20, 22 or 24 on Linux with glibc >= 2.38, e.g. Ubuntu 24.04, Debian 13, RHEL 10 (@btc-vision/uwebsockets.js)',
  'not musl (Alpine): neither build ships musl binaries',
];

/** The process the builds are matched against. `libc` is `glibc 2.36`, `musl`, or null off Linux. */
export interface Runtime {
  readonly nodeVersion: string;
  readonly abi: string;
  readonly platform: string;
  readonly arch: string;
  readonly libc: string | null;
}

/** How the selection touches the disk and the dynamic loader; test/uws-build.test.ts fakes it. */
export interface BinaryLoader {
  /** The file names in the build's binary folder, or null when the package is not installed. */
  listBinaries(build: UwsBuild): readonly string[] | null;
  /** Loads one `.node` file of the build (dlopen) and returns its exports; throws as dlopen does. */
  load(build: UwsBuild, fileName: string): unknown;
}

/** Why one build was passed over. */
export interface Attempt {
  readonly build: UwsBuild;
  readonly reason: string;
}

export type Selection =
  | {
      readonly ok: true;
      readonly build: UwsBuild;
      readonly fileName: string;
      readonly exports: unknown;
      readonly passedOver: readonly Attempt[];
    }
  | { readonly ok: false; readonly attempts: readonly Attempt[] };

export function binaryFileName(runtime: Runtime): string {
  return `uws_${runtime.platform}_${runtime.arch}_${runtime.abi}.node`;
}

/** The first build in `builds` whose binary for `runtime` exists and loads. */
export function selectUwsBuild(
  runtime: Runtime,
  loader: BinaryLoader,
  builds: readonly UwsBuild[] = UWS_BUILDS,
): Selection {
  const fileName = binaryFileName(runtime);
  const attempts: Attempt[] = [];
  for (const build of builds) {
    const files = loader.listBinaries(build);
    if (files === null) {
      attempts.push({ build, reason: 'not installed (run npm ci)' });
      continue;
    }
    if (!files.includes(fileName)) {
      attempts.push({ build, reason: missingBinaryReason(runtime, files) });
      continue;
    }
    let exports: unknown;
    try {
      exports = loader.load(build, fileName);
    } catch (error) {
      attempts.push({ build, reason: loadFailureReason(error, runtime) });
      continue;
    }
    if (!isUwsExports(exports)) {
      attempts.push({ build, reason: `${fileName} loaded but does not export App()` });
      continue;
    }
    return { ok: true, build, fileName, exports, passedOver: attempts };
  }
  return { ok: false, attempts };
}

/** The one line that starts every refusal, whatever its cause. */
export function refusalHeadline(runtime: Runtime): string {
  return (
    `Triggers API cannot start: the uWebSockets.js native binary did not load for Node ${runtime.nodeVersion} ` +
    `(ABI ${runtime.abi}) on ${runtime.platform}-${runtime.arch}${runtime.libc ? ` with ${runtime.libc}` : ''}.`
  );
}

/** The message printed when no build loads: what was tried, why each failed, and what would work. */
export function explainNoBuild(runtime: Runtime, attempts: readonly Attempt[]): string {
  return [
    refusalHeadline(runtime),
    'Tried, in order:',
    ...attempts.map((attempt) => `  - ${attempt.build.label}: ${attempt.reason}`),
    'Supported:',
    ...SUPPORTED_PLATFORMS.map((line) => `  - ${line}`),
    adviceFor(runtime),
  ].join('\n');
}

function isUwsExports(exports: unknown): boolean {
  return typeof (exports as { App?: unknown } | null)?.App === 'function';
}

function missingBinaryReason(runtime: Runtime, files: readonly string[]): string {
  const prefix = `uws_${runtime.platform}_${runtime.arch}_`;
  const abis = files
    .filter((name) => name.startsWith(prefix) && name.endsWith('.node'))
    .map((name) => name.slice(prefix.length, -'.node'.length))
    .sort((a, b) => Number(a) - Number(b));
  const has = abis.length > 0 ? `it has ABIs ${abis.join(', ')}` : 'it has none for this platform';
  return `no binary for ABI ${runtime.abi} on ${runtime.platform}-${runtime.arch} (${has})`;
}

// glibc's dlopen error names the first missing symbol version: "version `GLIBC_2.38' not found".
const MISSING_GLIBC = /version `GLIBC_([\d.]+)' not found/;

function loadFailureReason(error: unknown, runtime: Runtime): string {
  const message = error instanceof Error ? error.message : String(error);
  const glibc = MISSING_GLIBC.exec(message);
  if (glibc)
    return `needs glibc >= ${glibc[1]}, this system has ${runtime.libc ?? 'another libc'} (dlopen: GLIBC_${glibc[1]} not found)`;
  return `dlopen failed: ${message.split('\n')[0]}`;
}

/** One sentence on what to change, from what this machine is. */
function adviceFor(runtime: Runtime): string {
  const major = Number(/^v?(\d+)/.exec(runtime.nodeVersion)?.[1]);
  const glibc = /^glibc (\d+)\.(\d+)/.exec(runtime.libc ?? '');
  if (runtime.libc === 'musl')
    return 'Use a glibc-based system or image (Debian, Ubuntu, RHEL) with one of the combinations above.';
  if (!glibc) return 'Use Node 20, 22 or 24 on one of the combinations above.';
  const version = Number(glibc[1]) + Number(glibc[2]) / 1000;
  if (version < 2.027)
    return `This system's ${runtime.libc} is older than any build needs: move to glibc >= 2.27 with Node 20, or glibc >= 2.38 with Node 20, 22 or 24.`;
  if (version < 2.038) return `On this system (${runtime.libc}) run Node 20; for Node 22 or 24, move to glibc >= 2.38.`;
  if (major !== 20 && major !== 22 && major !== 24) return `Run Node 20, 22 or 24 (this is Node ${major}).`;
  return 'Reinstall the dependencies (npm ci): a build that should load here did not.';
}
