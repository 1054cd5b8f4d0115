// Generates vectors/delegation (spec §12.5): what a delegation may ask for given the
// delegating lease [DELEGATE-NARROW], and what a request made with a sub-lease may do
// [DELEGATE-ENFORCE]. Each vector is checked against the built @nexus-proxy/protocol before it is
// written. Usage: npx tsc -b packages/protocol && node scripts/gen-delegation-vectors.mjs
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runConformanceVector } from '../packages/protocol/dist/index.js';

const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'vectors', 'delegation');
mkdirSync(dir, { recursive: true });
for (const f of readdirSync(dir)) if (f.endsWith('.json')) rmSync(join(dir, f));

const root = { scope: 'reader writer' };
const narrowed = {
  scope: 'reader',
  nexus_services: ['github', 'jira'],
  nexus_intents: ['triage *'],
};
const expect = (e) =>
  typeof e === 'string' ? { verdict: 'reject', code: e } : { verdict: 'accept', grant: e };
const vectors = [];
const narrow = (id, description, parent, request, expected) =>
  vectors.push({
    id,
    kind: 'nexus-delegation',
    description,
    requirement: 'DELEGATE-NARROW',
    parent,
    request,
    expected: expect(expected),
  });
const enforce = (id, description, lease, service, intent, expected) =>
  vectors.push({
    id,
    kind: 'nexus-delegated-request',
    description,
    requirement: 'DELEGATE-ENFORCE',
    lease,
    request: { service, intent },
    expected: expected === 'accept' ? { verdict: 'accept' } : { verdict: 'reject', code: expected },
  });

narrow(
  'narrow-defaults',
  'nothing asked: the parent grant',
  root,
  {},
  {
    roles: ['reader', 'writer'],
  },
);
narrow(
  'narrow-all',
  'roles, services and an intent pattern',
  root,
  {
    roles: ['reader'],
    services: ['jira', 'github'],
    intent_pattern: 'triage *',
  },
  { roles: ['reader'], services: ['github', 'jira'], intents: ['triage *'] },
);
narrow(
  'narrow-inherits',
  "a sub-lease of a sub-lease keeps the parent's services and patterns",
  narrowed,
  {
    intent_pattern: '* issue 42',
  },
  { roles: ['reader'], services: ['github', 'jira'], intents: ['triage *', '* issue 42'] },
);
narrow(
  'narrow-service-subset',
  'a subset of the parent services',
  narrowed,
  { services: ['jira'] },
  {
    roles: ['reader'],
    services: ['jira'],
    intents: ['triage *'],
  },
);
narrow(
  'wider-role',
  'a role the parent lacks',
  narrowed,
  { roles: ['writer'] },
  'delegation_too_wide',
);
narrow(
  'wider-service',
  'a service outside the parent services',
  narrowed,
  {
    services: ['github', 'slack'],
  },
  'delegation_too_wide',
);
narrow(
  'bad-services',
  'services is not an array of service names',
  root,
  {
    services: 'github',
  },
  'validation_failed',
);
narrow('empty-services', 'an empty service list', root, { services: [] }, 'validation_failed');
narrow(
  'bad-intent-pattern',
  'an intent pattern with a control character',
  root,
  {
    intent_pattern: 'triage\n*',
  },
  'validation_failed',
);

enforce(
  'enforce-allowed',
  'a delegated service and a matching intent',
  narrowed,
  'github',
  'Triage issue 7',
  'accept',
);
enforce('enforce-not-narrowed', 'a lease without narrowing', root, 'slack', 'anything', 'accept');
enforce(
  'enforce-service',
  'a service outside nexus_services',
  narrowed,
  'slack',
  'triage issue 7',
  'service_not_delegated',
);
enforce(
  'enforce-intent',
  'an intent outside the pattern',
  narrowed,
  'github',
  'delete the repo',
  'intent_not_delegated',
);
enforce(
  'enforce-intent-whole',
  'the pattern matches the whole intent, not a part',
  narrowed,
  'github',
  'please triage x',
  'intent_not_delegated',
);
enforce(
  'enforce-every-pattern',
  'every pattern of the chain must match',
  {
    ...narrowed,
    nexus_intents: ['triage *', '* issue 42'],
  },
  'github',
  'triage issue 7',
  'intent_not_delegated',
);
enforce(
  'enforce-empty-intent',
  'an empty intent against a pattern',
  narrowed,
  'github',
  '',
  'intent_not_delegated',
);

let failing = 0;
for (const v of vectors) {
  const r = await runConformanceVector(v);
  if (!r.passed) {
    failing++;
    console.error(`FAIL ${v.id}: ${r.detail}`);
  }
  writeFileSync(join(dir, `${v.id}.json`), `${JSON.stringify(v, null, 2)}\n`);
}
console.log(`${vectors.length} delegation vectors written, ${failing} failing`);
process.exitCode = failing > 0 ? 1 : 0;
