import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isMessage, type IpcMessageType } from '../src/ipc.js';

/** The node's IPC protocol (src/ipc.ts): one module, one naming style, one guard. */

// Every type of the protocol; the `satisfies` check fails the build when one is added or renamed
// in src/ipc.ts without being listed here.
const ALL_TYPES = {
  ready: true,
  start_failed: true,
  shutdown: true,
  roles: true,
  ratelimit_lease: true,
  ratelimit_grant: true,
  delivery_wake: true,
  group_interest: true,
  group_interest_set: true,
  group_wake: true,
  metrics_scrape: true,
  metrics_scraped: true,
  metrics_collect: true,
  metrics_collected: true,
} satisfies Record<IpcMessageType, true>;
const TYPES = Object.keys(ALL_TYPES) as IpcMessageType[];

test('every message type is snake_case', () => {
  for (const type of TYPES) assert.match(type, /^[a-z]+(_[a-z]+)*$/, type);
});

test('isMessage recognises a message of its type and nothing else', () => {
  for (const type of TYPES) {
    for (const other of TYPES) assert.equal(isMessage({ type: other }, type), other === type, `${other} as ${type}`);
    for (const value of [null, undefined, type, 0, [], {}, { type: type.toUpperCase() }, { kind: type }]) {
      assert.equal(isMessage(value, type), false, `${JSON.stringify(value)} as ${type}`);
    }
  }
});

test('no module but src/ipc.ts writes to the IPC channel itself', () => {
  const src = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src');
  const raw = /\bprocess\.send\s*[!?]?\.?\s*\(|\bworker\.send\s*\(/;
  const offenders: string[] = [];
  for (const entry of fs.readdirSync(src, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.ts')) continue;
    const file = path.relative(src, path.join(entry.parentPath, entry.name));
    // main.ts writes start_failed itself: it exits once the write is done, failed or not.
    if (file === 'ipc.ts' || file === 'main.ts') continue;
    if (raw.test(fs.readFileSync(path.join(src, file), 'utf8'))) offenders.push(file);
  }
  assert.deepEqual(offenders, [], 'send through sendToPrimary / sendToWorker (src/ipc.ts)');
});
