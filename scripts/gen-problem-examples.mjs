// Writes Appendix D of docs/spec/nexus-v1.md: an example problem response for every error
// code of packages/protocol (ERROR_CODES), as a node sends it (status line, the Nexus
// fields, the WWW-Authenticate challenge of a 401, the problem+json body). Run after
// adding a code: npx tsc -b packages/protocol && node scripts/gen-problem-examples.mjs
// (packages/protocol/src/errors.test.ts checks that every code has its example).
import { readFileSync, writeFileSync } from 'node:fs';
import { STATUS_CODES } from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ERROR_CODES, NexusError, problemDetails } from '../packages/protocol/dist/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const specPath = join(root, 'docs', 'spec', 'nexus-v1.md');
const BEGIN = '<!-- problem-examples:begin (scripts/gen-problem-examples.mjs) -->';
const END = '<!-- problem-examples:end -->';

const blocks = [];
for (const code of Object.keys(ERROR_CODES)) {
  const body = problemDetails(new NexusError(code), 'pq3Vd0h7Jc2Lr9Xa');
  const lines = [
    `HTTP/1.1 ${body.status} ${STATUS_CODES[body.status] ?? 'Client Closed Request'}`,
    'Content-Type: application/problem+json',
    'Cache-Control: no-store',
    `Nexus-Request-Id: ${body.request_id}`,
    `Nexus-Error: ${code}`,
  ];
  if (body.status === 401) {
    lines.push(
      `WWW-Authenticate: ${code === 'unauthorized' ? 'Bearer realm="nexus-admin"' : `Nexus error="${code}"`}`,
    );
  }
  lines.push('', JSON.stringify(body, null, 1).replace(/\n\s*/g, ' '));
  blocks.push(`\`${code}\`:\n\n\`\`\`\n${lines.join('\n')}\n\`\`\``);
}
const section = `${BEGIN}\n\n${blocks.join('\n\n')}\n\n${END}`;
const spec = readFileSync(specPath, 'utf8');
const a = spec.indexOf(BEGIN);
const b = spec.indexOf(END);
if (a < 0 || b < 0) throw new Error('Appendix D markers not found in the spec');
writeFileSync(specPath, spec.slice(0, a) + section + spec.slice(b + END.length));
console.log(`${Object.keys(ERROR_CODES).length} problem examples written`);
