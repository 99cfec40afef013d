import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { routeTableWithoutServer } from '../src/cluster/route-table.js';

/**
 * `npm run openapi`: writes docs/openapi.json, the document GET /openapi.json serves, from the
 * route tables. test/openapi.test.ts fails while the committed file differs from what is served.
 */
const target = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../docs/openapi.json');
const route = routeTableWithoutServer().find((spec) => spec.path === '/openapi.json')!;
const reply = await route.handle(undefined as never, undefined);
fs.writeFileSync(target, reply.body!);
process.stdout.write(`wrote ${path.relative(process.cwd(), target)} (${reply.body!.length} bytes)\n`);
