// Policy engine: deny overrides allow, default deny, each matcher, glob edge cases, time
// windows across midnight, the policy hash, validation errors. Table-driven.
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../config/errors.js';
import { parseConfig } from '../config/load.js';
import { compilePolicy, type PolicyInput, type PolicySource } from './compile.js';
import { compileGlob, globProblem } from './glob.js';
import type { PolicyRule } from './rule-schema.js';

const services = { github: {}, slack: {}, echo: {} };
const agents = {
  'triage-bot': { roles: ['triage'] },
  'deploy-bot': { roles: ['deploy', 'triage'] },
};

function source(rules: readonly Record<string, unknown>[]): PolicySource {
  // Go through the config schema so rules are normalised exactly as at load.
  const c = parseConfig({
    version: 1,
    services: Object.fromEntries(
      Object.keys(services).map((s) => [
        s,
        { upstream: 'https://x.example', auth: { type: 'none' } },
      ]),
    ),
    agents,
    policies: rules,
  });
  return c;
}

// Wednesday 2025-01-15 12:00 UTC.
const NOON_WED = Date.UTC(2025, 0, 15, 12, 0);

const req = (over: Partial<PolicyInput> = {}): PolicyInput => ({
  agent: 'triage-bot',
  roles: ['triage'],
  service: 'github',
  method: 'GET',
  path: '/repos/acme/app/issues',
  intent: 'triage new issues',
  now: NOON_WED,
  ...over,
});

describe('decisions', () => {
  const policy = compilePolicy(
    source([
      {
        id: 'read-issues',
        allow: {
          roles: ['triage'],
          services: ['github'],
          methods: ['GET'],
          paths: ['/repos/*/*/issues/**'],
        },
      },
      { id: 'no-secret-repo', deny: { paths: ['/repos/acme/secret/**'] } },
      { id: 'read-anything-slack', allow: { services: ['slack'] } },
    ]),
  );

  it.each([
    ['allowed by a matching allow', req(), 'allow', ['read-issues']],
    ['default deny when nothing matches', req({ method: 'POST' }), 'deny', []],
    [
      'deny overrides allow',
      req({ path: '/repos/acme/secret/issues' }),
      'deny',
      ['no-secret-repo'],
    ],
    [
      'deny applies across services',
      req({ service: 'slack', path: '/repos/acme/secret/x' }),
      'deny',
      ['no-secret-repo'],
    ],
    [
      'another service allowed',
      req({ service: 'slack', path: '/chat' }),
      'allow',
      ['read-anything-slack'],
    ],
    ['unknown service: only global rules', req({ service: 'nope' }), 'deny', []],
  ] as const)('%s', (_name, input, decision, ruleIds) => {
    const d = policy.evaluate(input);
    expect(d.decision).toBe(decision);
    expect(d.ruleIds).toEqual(ruleIds);
    expect(d.reasons.length).toBeGreaterThan(0);
  });

  it('with no rules denies everything', () => {
    expect(compilePolicy(source([])).evaluate(req()).decision).toBe('deny');
  });

  it('reports every matching allow rule', () => {
    const p = compilePolicy(
      source([
        { id: 'a', allow: {} },
        { id: 'b', allow: { methods: ['GET'] } },
      ]),
    );
    expect(p.evaluate(req()).ruleIds).toEqual(['a', 'b']);
  });

  it('explains every rule with the field that failed', () => {
    const e = policy.explain(req({ path: '/repos/acme/secret/issues' }));
    expect(e.decision).toBe('deny');
    expect(e.rules).toEqual([
      { id: 'read-issues', effect: 'allow', matched: true, reason: expect.any(String) as string },
      { id: 'no-secret-repo', effect: 'deny', matched: true, reason: expect.any(String) as string },
      {
        id: 'read-anything-slack',
        effect: 'allow',
        matched: false,
        failed: 'services',
        reason: expect.any(String) as string,
      },
    ]);
    expect(policy.explain(req({ method: 'DELETE' })).rules[0]).toMatchObject({
      matched: false,
      failed: 'methods',
    });
  });

  it('explain and evaluate agree', () => {
    for (const input of [
      req(),
      req({ method: 'POST' }),
      req({ path: '/repos/acme/secret/x' }),
      req({ service: 'slack' }),
    ]) {
      const { rules: _rules, ...decision } = policy.explain(input);
      expect(decision).toEqual(policy.evaluate(input));
    }
  });

  it('indexes rules by service', () => {
    expect(policy.rulesFor('github').map((r) => r.id)).toEqual(['read-issues', 'no-secret-repo']);
    expect(policy.rulesFor('slack').map((r) => r.id)).toEqual([
      'no-secret-repo',
      'read-anything-slack',
    ]);
    expect(policy.rulesFor('echo').map((r) => r.id)).toEqual(['no-secret-repo']);
    expect(policy.rulesFor('unknown').map((r) => r.id)).toEqual(['no-secret-repo']);
  });

  it('is frozen', () => {
    expect(Object.isFrozen(policy)).toBe(true);
  });
});

describe('matchers', () => {
  const cases: [string, Record<string, unknown>, Partial<PolicyInput>, boolean][] = [
    ['agents: listed', { agents: ['triage-bot'] }, {}, true],
    ['agents: not listed', { agents: ['deploy-bot'] }, {}, false],
    ['roles: any overlap', { roles: ['deploy', 'triage'] }, {}, true],
    ['roles: none held', { roles: ['deploy'] }, {}, false],
    ['roles: input with no roles', { roles: ['triage'] }, { roles: [] }, false],
    ['services: listed', { services: ['github', 'slack'] }, {}, true],
    ['services: not listed', { services: ['slack'] }, {}, false],
    ['methods: listed', { methods: ['GET', 'HEAD'] }, {}, true],
    ['methods: lowercase in config', { methods: ['get'] }, {}, true],
    ['methods: lowercase in input', { methods: ['GET'] }, { method: 'get' }, true],
    ['methods: not listed', { methods: ['POST'] }, {}, false],
    ['methods: * is any', { methods: ['*'] }, { method: 'PATCH' }, true],
    ['paths: one glob matches', { paths: ['/x', '/repos/**'] }, {}, true],
    ['paths: none matches', { paths: ['/x'] }, {}, false],
    ['intent: full match', { intent: 'triage .*' }, {}, true],
    ['intent: case-insensitive', { intent: 'TRIAGE NEW ISSUES' }, {}, true],
    ['intent: substring is not enough', { intent: 'triage' }, {}, false],
    ['intent: alternation stays anchored', { intent: 'x|triage new issues' }, {}, true],
    ['intent: alternation without full match', { intent: 'x|triage' }, {}, false],
    ['intent: empty intent vs .*', { intent: '.*' }, { intent: '' }, true],
    ['intent: empty intent vs .+', { intent: '.+' }, { intent: '' }, false],
    ['time: inside', { time: { from: '09:00', to: '17:00' } }, {}, true],
    ['time: before', { time: { from: '13:00', to: '17:00' } }, {}, false],
    ['time: to is exclusive', { time: { from: '09:00', to: '12:00' } }, {}, false],
    ['time: from is inclusive', { time: { from: '12:00', to: '13:00' } }, {}, true],
    ['time: day listed', { time: { days: ['wed'] } }, {}, true],
    ['time: day not listed', { time: { days: ['mon', 'tue'] } }, {}, false],
    [
      'time: IANA zone (13:00 in Paris)',
      { time: { from: '13:00', to: '14:00', tz: 'Europe/Paris' } },
      {},
      true,
    ],
    [
      'time: IANA zone (not 12:00 in Paris)',
      { time: { from: '12:00', to: '13:00', tz: 'Europe/Paris' } },
      {},
      false,
    ],
    ['all present fields must match', { roles: ['triage'], methods: ['POST'] }, {}, false],
    ['empty matcher matches all', {}, {}, true],
  ];
  it.each(cases)('%s', (_name, allow, over, matches) => {
    const p = compilePolicy(source([{ id: 'r', allow }]));
    expect(p.evaluate(req(over)).decision).toBe(matches ? 'allow' : 'deny');
  });
});

describe('time windows across midnight', () => {
  // Window starts Friday 22:00 and ends 06:00 the next morning.
  const p = compilePolicy(
    source([{ id: 'night', allow: { time: { days: ['fri'], from: '22:00', to: '06:00' } } }]),
  );
  const at = (day: number, h: number, m = 0): number => Date.UTC(2025, 0, day, h, m); // Jan 2025: 17 = Fri
  it.each([
    ['Fri 21:59', at(17, 21, 59), false],
    ['Fri 22:00', at(17, 22), true],
    ['Fri 23:59', at(17, 23, 59), true],
    ['Sat 00:00', at(18, 0), true],
    ['Sat 05:59', at(18, 5, 59), true],
    ['Sat 06:00', at(18, 6), false],
    ['Sat 22:30 (Saturday not listed)', at(18, 22, 30), false],
    ['Fri 02:00 (belongs to Thursday)', at(17, 2), false],
    ['Fri 12:00', at(17, 12), false],
  ])('%s', (_name, now, inside) => {
    expect(p.evaluate(req({ now })).decision).toBe(inside ? 'allow' : 'deny');
  });

  it('without days, covers both sides of midnight every day', () => {
    const q = compilePolicy(source([{ id: 'n', allow: { time: { from: '23:00', to: '01:00' } } }]));
    expect(q.evaluate(req({ now: at(15, 23, 30) })).decision).toBe('allow');
    expect(q.evaluate(req({ now: at(16, 0, 30) })).decision).toBe('allow');
    expect(q.evaluate(req({ now: at(16, 1, 0) })).decision).toBe('deny');
  });
});

describe('globs', () => {
  it.each([
    ['/a/*/c', '/a/b/c', true],
    ['/a/*/c', '/a/b/x/c', false],
    ['/a/*/c', '/a//c', false],
    ['/a/*', '/a', false],
    ['/a/*', '/a/b', true],
    ['/a/*', '/a/b/c', false],
    ['/**', '/', true],
    ['/**', '/a/b/c', true],
    ['/**/c', '/c', true],
    ['/**/c', '/a/b/c', true],
    ['/**/c', '/a/b/cc', false],
    ['/a/**/c', '/a/c', true],
    ['/a/**/c', '/a/b/c', true],
    ['/a/**/c', '/a/b/x/c', true],
    ['/a/**/c', '/a/b/x/d', false],
    ['/a/**', '/a', true],
    ['/a/**', '/a/', true],
    ['/a/**', '/a/b/c', true],
    ['/a/**', '/ab', false],
    ['/a/b', '/a/b/c', false],
    ['/a/b', '/a/bc', false],
    ['/a/b', '/a/b', true],
    ['/a/b/', '/a/b', false],
    ['/a/b/', '/a/b/', true],
    ['/a.b/c', '/aXb/c', false],
    ['/a+(b)/c', '/a+(b)/c', true],
    ['/a/**/**/c', '/a/c', true],
    ['/repos/*/*/issues/**', '/repos/acme/app/issues', true],
    ['/repos/*/*/issues/**', '/repos/acme/app/issues/7/comments', true],
    ['/repos/*/*/issues/**', '/repos/acme/issues', false],
  ])('%s vs %s', (glob, path, matches) => {
    expect(compileGlob(glob).test(path)).toBe(matches);
  });

  it.each([
    '',
    'a/b',
    '/a//b',
    '/a/b*',
    '/a/*b',
    '/a/./b',
    '/a/../b',
    '/a?b',
    '/a b',
    '/**/x/**/y/**',
    '/a\\b',
  ])('rejects %j', (glob) => {
    expect(globProblem(glob)).toBeDefined();
    expect(() => compileGlob(glob)).toThrow(TypeError);
  });

  it('stays fast on adversarial paths', () => {
    const re = compileGlob('/**/a/**/b');
    const path = '/a'.repeat(2000) + '/c';
    const t = performance.now();
    expect(re.test(path)).toBe(false);
    expect(performance.now() - t).toBeLessThan(2000);
  });
});

describe('policy hash', () => {
  const rules = [
    {
      id: 'a',
      allow: { roles: ['triage'], services: ['github'], methods: ['GET'], paths: ['/x/**'] },
    },
    { id: 'b', deny: { methods: ['DELETE'] } },
  ];
  const hash = compilePolicy(source(rules)).hash;

  it('is SHA-256 hex', () => {
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('is stable under key order and set order', () => {
    const reordered = [
      {
        allow: { paths: ['/x/**'], methods: ['get'], services: ['github'], roles: ['triage'] },
        id: 'a',
      },
      { deny: { methods: ['DELETE', 'DELETE'] }, id: 'b' },
    ];
    expect(compilePolicy(source(reordered)).hash).toBe(hash);
  });

  it('ignores descriptions', () => {
    expect(
      compilePolicy(
        source([{ ...rules[0], description: 'docs' }, rules[1] as Record<string, unknown>]),
      ).hash,
    ).toBe(hash);
  });

  it.each([
    [
      'a changed method',
      [{ ...rules[0], allow: { ...rules[0]?.allow, methods: ['POST'] } }, rules[1]],
    ],
    ['allow turned deny', [{ id: 'a', deny: rules[0]?.allow }, rules[1]]],
    ['a removed rule', [rules[0]]],
    ['a renamed rule', [rules[0], { ...rules[1], id: 'c' }]],
  ])('changes with %s', (_name, changed) => {
    expect(compilePolicy(source(changed as Record<string, unknown>[])).hash).not.toBe(hash);
  });

  it("changes with an agent's roles", () => {
    const c = source(rules);
    const other = { ...c, agents: { ...c.agents, 'triage-bot': { roles: ['triage', 'admin'] } } };
    expect(compilePolicy(other).hash).not.toBe(hash);
  });
});

describe('validation', () => {
  const base = source([]);
  const rule = (match: PolicyRule['match']): PolicyRule => ({ id: 'r', effect: 'allow', match });

  it.each([
    ['unknown service', rule({ services: ['nope'] }), 'policies[0].allow.services[0]'],
    ['unknown agent', rule({ agents: ['ghost'] }), 'policies[0].allow.agents[0]'],
    ['bad regex', rule({ intent: '(' }), 'policies[0].allow.intent'],
    ['bad glob', rule({ paths: ['/a/b*'] }), 'policies[0].allow.paths[0]'],
    [
      'bad time zone',
      rule({ time: { from: '00:00', to: '24:00', tz: 'Nowhere/City' } }),
      'policies[0].allow.time.tz',
    ],
  ])('compilePolicy rejects %s', (_name, r, path) => {
    try {
      compilePolicy({ ...base, policies: [r] });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).code).toBe('config_invalid');
      expect((err as ConfigError).issues.map((i) => i.path)).toEqual([path]);
    }
  });

  it.each([
    ['unknown service', { services: ['nope'] }, 'policies[0].allow.services[0]'],
    ['unknown agent', { agents: ['ghost'] }, 'policies[0].allow.agents[0]'],
    ['bad regex', { intent: '[a-' }, 'policies[0].allow.intent'],
    ['bad glob', { paths: ['repos/**'] }, 'policies[0].allow.paths[0]'],
  ])('config load rejects %s', (_name, allow, path) => {
    try {
      source([{ id: 'r', allow }]);
      expect.unreachable();
    } catch (err) {
      expect((err as ConfigError).code).toBe('config_invalid');
      expect((err as ConfigError).issues.map((i) => i.path)).toEqual([path]);
    }
  });
});

describe('regression: a misspelt method in a rule is an error (newcomer check)', () => {
  it('refuses DELET in a deny rule instead of matching nothing', () => {
    let issues: readonly { path: string }[] = [];
    try {
      parseConfig({
        version: 1,
        services: { svc: { upstream: 'http://127.0.0.1:9', auth: { type: 'none' } } },
        policies: [{ id: 'no-delete', deny: { methods: ['DELET'] } }],
      });
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      issues = (e as ConfigError).issues;
    }
    expect(issues.map((i) => i.path)).toContain('policies[0].deny.methods[0]');
  });
});

describe('approve rules (issue 15)', () => {
  const rules = [
    { id: 'reads', allow: { services: ['github'] } },
    {
      id: 'writes-need-a-human',
      approve: { services: ['github'], methods: ['POST'] },
      approvers: ['ops', 'alice'],
      timeout: '90s',
    },
    { id: 'no-admin', deny: { paths: ['/admin/**'] } },
  ];
  const p = compilePolicy(source(rules));

  it.each([
    ['an allow rule alone', req(), 'allow', ['reads'], undefined],
    [
      'an approve rule over an allow rule',
      req({ method: 'POST' }),
      'allow',
      ['writes-need-a-human'],
      { ruleId: 'writes-need-a-human', approvers: ['alice', 'ops'], timeoutMs: 90_000 },
    ],
    [
      'a deny rule over an approve rule',
      req({ method: 'POST', path: '/admin/x' }),
      'deny',
      ['no-admin'],
      undefined,
    ],
  ])('%s', (_name, input, decision, ruleIds, approval) => {
    const d = p.evaluate(input);
    expect(d.decision).toBe(decision);
    expect(d.ruleIds).toEqual(ruleIds);
    expect(d.approval).toEqual(approval);
    expect(p.explain(input).approval).toEqual(approval);
  });

  it('takes a default timeout and any approver when they are not given', () => {
    const q = compilePolicy(source([{ id: 'a', approve: { services: ['slack'] } }]));
    expect(q.evaluate(req({ service: 'slack' })).approval).toEqual({
      ruleId: 'a',
      timeoutMs: 120_000,
    });
  });

  it('keeps the hash of a policy without approve rules, and hashes the approval settings', () => {
    const plain = [{ id: 'reads', allow: { services: ['github'] } }];
    expect(compilePolicy(source(plain)).hash).toBe(compilePolicy(source(plain)).hash);
    const a = compilePolicy(source([{ id: 'a', approve: { services: ['slack'] }, timeout: '1m' }]));
    const b = compilePolicy(source([{ id: 'a', approve: { services: ['slack'] }, timeout: '2m' }]));
    expect(a.hash).not.toBe(b.hash);
  });

  it.each([
    [{ id: 'x', allow: {}, approve: {} }, 'policies[0].approve'],
    [{ id: 'x', allow: {}, approvers: ['ops'] }, 'policies[0].approvers'],
    [{ id: 'x', approve: {}, timeout: '10m' }, 'policies[0].timeout'],
    [{ id: 'x', approve: {}, approvers: [] }, 'policies[0].approvers'],
  ])('config load rejects %j', (rule, path) => {
    try {
      source([rule]);
      expect.unreachable();
    } catch (err) {
      expect((err as ConfigError).issues.map((i) => i.path)).toContain(path);
    }
  });
});

describe('delegation matcher (issue 16, spec §12.5)', () => {
  const policy = compilePolicy(
    source([
      { id: 'read', allow: { roles: ['triage'], services: ['github'] } },
      // Sub-leases of sub-leases (depth 2 and more) may not touch slack.
      { id: 'no-deep-slack', deny: { services: ['slack'], delegation: { min_depth: 2 } } },
      { id: 'slack', allow: { services: ['slack'] } },
      // Only leases that were not delegated may POST.
      { id: 'post-root-only', deny: { methods: ['POST'], delegation: { min_depth: 1 } } },
    ]),
  );
  it.each([
    [[], 'slack', 'GET', 'allow'],
    [['l1'], 'slack', 'GET', 'allow'],
    [['l1', 'l2'], 'slack', 'GET', 'deny'],
    [['l1', 'l2', 'l3'], 'slack', 'GET', 'deny'],
    [[], 'github', 'POST', 'allow'],
    [['l1'], 'github', 'POST', 'deny'],
    [['l1'], 'github', 'GET', 'allow'],
  ])('chain %j, %s %s -> %s', (delegation, service, method, decision) => {
    expect(policy.evaluate(req({ delegation, service, method })).decision).toBe(decision);
  });
  it('explain names the delegation matcher', () => {
    const e = policy.explain(req({ delegation: ['l1'], service: 'github', method: 'POST' }));
    expect(e.rules.find((r) => r.id === 'post-root-only')?.matched).toBe(true);
    const e0 = policy.explain(req({ service: 'github', method: 'POST' }));
    expect(e0.rules.find((r) => r.id === 'post-root-only')).toMatchObject({
      matched: false,
      failed: 'delegation',
    });
  });
  it('refuses a bad range at load', () => {
    for (const delegation of [{}, { min_depth: 3, max_depth: 1 }, { max_depth: 9 }, { depth: 1 }]) {
      expect(() => source([{ id: 'r', allow: { delegation } }])).toThrow(ConfigError);
    }
  });
});
