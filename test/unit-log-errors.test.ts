import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

/** One way to log an error (src/log.ts): the error object under `err`, never its message alone. */
test('every log call in src/ puts the error object under err, not its message', () => {
  const src = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src');
  const messageOnly = /\berr: [^,}]*\.message\b/;
  const offenders: string[] = [];
  for (const entry of fs.readdirSync(src, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.ts')) continue;
    const file = path.join(entry.parentPath, entry.name);
    fs.readFileSync(file, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        if (messageOnly.test(line)) offenders.push(`${path.relative(src, file)}:${i + 1}`);
      });
  }
  assert.deepEqual(offenders, [], 'log { err: error }');
});
