// Runs every conformance vector under vectors/{rfc9421,rfc9530,wimse,nexus,nexus-1.1} against the
// built @nexus-proxy/protocol (packages/protocol/dist). Prints one line per failure and a last
// line "N passed, N failed"; exits 1 if any failed. Run via `npm run conformance`.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isConformanceVector, runConformanceVector } from '../packages/protocol/dist/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const FOLDERS = ['rfc9421', 'rfc9530', 'wimse', 'nexus', 'nexus-1.1', 'delegation'];

let passed = 0;
let failed = 0;
const perSuite = [];
for (const folder of FOLDERS) {
  const before = { passed, failed };
  const dir = join(root, 'vectors', folder);
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()) {
    const vector = JSON.parse(readFileSync(join(dir, file), 'utf8'));
    if (!isConformanceVector(vector)) continue; // keys.json and other data files
    const result = await runConformanceVector(vector);
    if (result.passed) passed++;
    else {
      failed++;
      console.log(`FAIL ${folder}/${file} ${result.id}: ${result.detail}`);
    }
  }
  perSuite.push(
    `${folder} ${passed - before.passed}/${passed + failed - before.passed - before.failed}`,
  );
}
console.log(perSuite.join(', '));
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed > 0 ? 1 : 0;
