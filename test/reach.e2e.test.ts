/**
 * Issue 11, base-URL mode: unmodified agents on the vendors' own SDKs (the real `openai` and
 * `@anthropic-ai/sdk` packages) run under `nexus run` with no code change. The node declares
 * per service the variables those SDKs read; `nexus run` points them at its sidecar with a
 * dummy key the sidecar strips; the proxy injects the real credential. Against a real
 * `nexus up`, the real CLI and loopback upstreams configured as the two presets.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { codeOf } from './helpers/agents.js';
import { REPO, startNode, type TestNode } from './helpers/node.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';

const OPENAI_SECRET = 'sk-reach-openai-secret-0123456789abcdefABCDEF';
const ANTHROPIC_SECRET = 'sk-ant-reach-anthropic-secret-0123456789abcdef';
const DUMMY = 'nexus-dummy-key-replaced-by-nexus';
const CLIENT = join(REPO, 'test/fixtures/reach-sdk-client.mjs');

interface ClientOutput {
  env: Record<string, string>;
  openai?: { url: string; headers: Record<string, string>; body: string };
  anthropic?: { url: string; headers: Record<string, string>; body: string };
  openaiError?: string;
  anthropicError?: string;
}

describe('nexus run, base-URL mode (issue 11)', () => {
  let node: TestNode;
  let openaiUp: TestUpstream;
  let anthropicUp: TestUpstream;

  beforeAll(async () => {
    openaiUp = await startUpstream();
    anthropicUp = await startUpstream();
    const other = await startUpstream();
    await other.close();
    node = await startNode({
      services: {
        // As `nexus service add openai --preset openai --upstream <loopback>` writes them.
        openai: {
          upstream: openaiUp.url,
          auth: { type: 'bearer', credential: 'openai-key' },
          env: { OPENAI_BASE_URL: '{base_url}/v1', OPENAI_API_KEY: '{dummy_key}' },
          hosts: ['api.openai.com'],
        },
        anthropic: {
          upstream: anthropicUp.url,
          auth: { type: 'header', name: 'x-api-key', credential: 'anthropic-key' },
          env: { ANTHROPIC_BASE_URL: '{base_url}', ANTHROPIC_API_KEY: '{dummy_key}' },
          hosts: ['api.anthropic.com'],
        },
        // No rule opens it to the agent: `nexus run` is never told about it.
        hidden: {
          upstream: other.url,
          auth: { type: 'bearer', credential: 'openai-key' },
          env: { HIDDEN_BASE_URL: '{base_url}' },
        },
      },
      agents: { bot: { roles: ['dev'] } },
      policies: [{ id: 'dev-llm', allow: { roles: ['dev'], services: ['openai', 'anthropic'] } }],
    });
    await node.setCredential('openai-key', { value: OPENAI_SECRET });
    await node.setCredential('anthropic-key', { value: ANTHROPIC_SECRET });
  });

  afterAll(async () => {
    await node?.stop();
    await openaiUp?.close();
    await anthropicUp?.close();
  });

  it('the openai and anthropic SDKs work unchanged; the upstream gets the real key, the child never does', async () => {
    openaiUp.reset();
    anthropicUp.reset();
    const r = await node.runAgent('bot', [process.execPath, CLIENT]);
    expect(r.stderr).not.toContain('warning: cannot read');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as ClientOutput;
    expect(out.openaiError).toBeUndefined();
    expect(out.anthropicError).toBeUndefined();

    // The SDKs reached the loopback upstreams through Nexus, at the paths they always call.
    expect(openaiUp.requests.map((q) => `${q.method} ${q.url}`)).toEqual([
      'POST /v1/chat/completions',
    ]);
    expect(anthropicUp.requests.map((q) => `${q.method} ${q.url}`)).toEqual(['POST /v1/messages']);
    const o = openaiUp.requests[0];
    const a = anthropicUp.requests[0];
    expect(o?.headers.authorization).toBe(`Bearer ${OPENAI_SECRET}`);
    expect(a?.headers['x-api-key']).toBe(ANTHROPIC_SECRET);
    expect(JSON.parse(o?.body.toString() ?? '{}')).toMatchObject({ model: 'gpt-test' });
    // The dummy key is stripped: no upstream ever sees it, in any field.
    for (const q of [...openaiUp.requests, ...anthropicUp.requests]) {
      expect(q.rawHeaders.join('\n')).not.toContain(DUMMY);
      expect(q.url).not.toContain(DUMMY);
    }

    // The child's environment: the sidecar's URLs and the dummy key, nothing else of ours.
    const base = out.env.NEXUS_PROXY;
    expect(base).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(out.env.OPENAI_BASE_URL).toBe(`${base}/openai/v1`);
    expect(out.env.ANTHROPIC_BASE_URL).toBe(`${base}/anthropic`);
    expect(out.env.OPENAI_API_KEY).toBe(DUMMY);
    expect(out.env.ANTHROPIC_API_KEY).toBe(DUMMY);
    expect(out.env.HIDDEN_BASE_URL).toBeUndefined();
    expect(out.env.NEXUS_ENROLLMENT_TOKEN).toBeUndefined();
    // Neither the environment nor the (echoed, scrubbed) responses hold a credential.
    for (const secret of [OPENAI_SECRET, ANTHROPIC_SECRET, r.token]) {
      expect(r.stdout).not.toContain(secret);
      expect(r.stderr).not.toContain(secret);
    }
    expect(out.openai?.headers.authorization).toBe('Bearer [REDACTED]');
  });

  it('--env names the services; none sets nothing; an unknown or unlisted service is refused', async () => {
    const only = await node.runAgent('bot', ['sh', '-c', 'env'], { args: ['--env', 'openai'] });
    expect(only.code).toBe(0);
    expect(only.stdout).toMatch(/^OPENAI_BASE_URL=http:\/\/127\.0\.0\.1:\d+\/openai\/v1$/m);
    expect(only.stdout).not.toContain('ANTHROPIC_');

    const none = await node.runAgent('bot', ['sh', '-c', 'env'], { args: ['--env', 'none'] });
    expect(none.code).toBe(0);
    expect(none.stdout).not.toMatch(/OPENAI_|ANTHROPIC_/);
    expect(none.stdout).toMatch(/^NEXUS_PROXY=/m);

    // `hidden` exists on the node, but no rule opens it to this agent.
    const hidden = await node.runAgent('bot', ['true'], { args: ['--env', 'hidden'] });
    expect(hidden.code).not.toBe(0);
    expect(hidden.stderr).toContain('(service_unknown)');
  });

  it('the dummy key is stripped from the query and from any header it appears in', async () => {
    openaiUp.reset();
    const r = await node.runAgent('bot', [
      'sh',
      '-c',
      'curl -s -H "x-custom: k=$OPENAI_API_KEY" "$OPENAI_BASE_URL/models?key=$OPENAI_API_KEY&limit=2"',
    ]);
    expect(r.code).toBe(0);
    expect(openaiUp.requests.map((q) => q.url)).toEqual(['/v1/models?limit=2']);
    expect(openaiUp.requests[0]?.headers['x-custom']).toBeUndefined();
    expect(openaiUp.requests[0]?.headers.authorization).toBe(`Bearer ${OPENAI_SECRET}`);
  });

  it('the service list is served only to a signed request', async () => {
    const res = await fetch(`${node.proxyUrl}/v1/agent/services`);
    expect(res.status).toBe(401);
    expect(res.headers.get('nexus-error')).toBeTruthy();
    const agent = await node.enroll('bot');
    const services = await agent.services();
    expect(services.map((s) => s.name)).toEqual(['anthropic', 'openai']);
    expect(services.find((s) => s.name === 'openai')).toEqual({
      name: 'openai',
      env: { OPENAI_BASE_URL: '{base_url}/v1', OPENAI_API_KEY: '{dummy_key}' },
      hosts: ['api.openai.com'],
      path_prefix: '',
    });
    agent.close();
  });

  it('a role taken away by a config reload leaves the listing at once, on the lease already held', async () => {
    const agent = await node.enroll('bot'); // a lease with role dev
    const config = readFileSync(node.configPath, 'utf8');
    try {
      expect((await agent.services()).map((s) => s.name)).toEqual(['anthropic', 'openai']);
      const changed = parse(config) as { agents: Record<string, { roles: string[] }> };
      changed.agents['bot'] = { roles: ['ops'] };
      writeFileSync(node.configPath, stringify(changed));
      expect((await node.admin('POST', '/v1/config/reload')).status).toBe(200);
      // The lease still names dev; the agent no longer has it, so the proxy would refuse
      // these services (rolesHeld) and the listing no longer offers them.
      expect(await agent.services()).toEqual([]);
      expect(await codeOf(agent.fetch('openai', '/v1/models'))).toBe('policy_denied');
    } finally {
      writeFileSync(node.configPath, config);
      expect((await node.admin('POST', '/v1/config/reload')).status).toBe(200);
    }
    // Given back, the role counts again on the same lease (it is still in its scope).
    expect((await agent.services()).map((s) => s.name)).toEqual(['anthropic', 'openai']);
    agent.close();
  });
});
