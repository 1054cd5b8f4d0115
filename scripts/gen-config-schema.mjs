// Writes docs/nexus.schema.json: the JSON Schema of nexus.yaml, generated from the zod
// schema (packages/server/src/config/json-schema.ts), for editor completion. Run after
// changing the config schema or adding a mechanic:
//   npx tsc -b && node scripts/gen-config-schema.mjs
// (test/config-schema.test.ts fails while the committed file is stale).
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
// The package entry registers every built-in mechanic, so each auth.type is in the schema.
import { configJsonSchemaText } from '../packages/server/dist/index.js';

const out = join(dirname(fileURLToPath(import.meta.url)), '..', 'docs', 'nexus.schema.json');
writeFileSync(out, configJsonSchemaText());
console.log(`wrote ${out}`);
