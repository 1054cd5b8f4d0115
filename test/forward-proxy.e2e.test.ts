/**
 * Issue 11, forward-proxy mode: unmodified clients (curl, Python urllib and requests, Node
 * through undici's EnvHttpProxyAgent) under `nexus run` reach a service by its own host name
 * through HTTP_PROXY / HTTPS_PROXY. CONNECT is intercepted with the run's CA; each request
 * is signed and goes through the proxy's one pipeline (policy, audit, injection, scrubbing).
 * A host no service owns is refused. The service's upstream is a 127.0.0.1 server; the
 * service owns `api.example.test` by its `hosts` claim (no DNS involved: clients send the
 * name to the proxy).
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO, startNode, type TestNode } from './helpers/node.js';
import { startUpstream, type TestUpstream } from './helpers/upstream.js';
import { startGitServer, type GitServer } from './helpers/git-server.js';

const SECRET = 'fwd-proxy-upstream-secret-0123456789abcdefXYZ';
const GIT_PASSWORD = 'fwd-proxy-git-password-0123456789abcdef';
const PREFIXED_SECRET = 'fwd-proxy-prefixed-secret-0123456789abcdef';
const NODE_CLIENT = join(REPO, 'test/fixtures/reach-undici-client.mjs');
const OPENAI_CLIENT = join(REPO, 'test/fixtures/reach-openai-proxy-client.mjs');

// .ci/run installs curl, python3 and python3-requests; a developer machine without Python
// skips its test, CI never does.
const CI = process.env.CI === 'true';
const HAS_PYTHON =
  CI ||
  spawnSync('python3', ['-c', 'import ssl, urllib.request'], { stdio: 'ignore' }).status === 0;
const HAS_REQUESTS =
  CI || spawnSync('python3', ['-c', 'import requests'], { stdio: 'ignore' }).status === 0;

const HAS_BWRAP =
  CI || spawnSync('sh', ['-c', 'command -v bwrap'], { stdio: 'ignore' }).status === 0;

interface AuditRow {
  kind: string;
  service?: string;
  path?: string;
  decision: string;
  error_code?: string;
}

/** The parts a shell child prints between `--- name` markers. */
function sections(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of stdout.split(/^--- /m).slice(1)) {
    const nl = part.indexOf('\n');
    out[part.slice(0, nl).trim()] = part.slice(nl + 1).trim();
  }
  return out;
}

describe('nexus run, forward-proxy mode (issue 11)', () => {
  let node: TestNode;
  let up: TestUpstream;
  let prefixed: TestUpstream;
  let gitServer: GitServer;

  beforeAll(async () => {
    up = await startUpstream();
    prefixed = await startUpstream();
    gitServer = await startGitServer({ user: 'nexus-bot', password: GIT_PASSWORD });
    node = await startNode({
      services: {
        example: {
          upstream: up.url,
          auth: { type: 'bearer', credential: 'example-key' },
          hosts: ['api.example.test'],
        },
        // The OpenAI preset's host, sent to the loopback upstream.
        openai: {
          upstream: up.url,
          auth: { type: 'bearer', credential: 'example-key' },
          hosts: ['api.openai.com'],
        },
        // A Git smart-HTTP server behind HTTP Basic: git clone/push through HTTPS_PROXY.
        git: {
          upstream: gitServer.url,
          auth: { type: 'basic', credential: 'git-cred' },
          hosts: ['git.example.test'],
        },
        // An upstream with a path: requests must lie under it, and it is removed.
        prefixed: {
          upstream: `${prefixed.url}/api/1.0`,
          auth: { type: 'header', name: 'x-api-key', credential: 'prefixed-key' },
          hosts: ['app.prefixed.test'],
        },
      },
      agents: { bot: { roles: ['dev'] } },
      policies: [
        { id: 'dev-reads', allow: { roles: ['dev'], services: ['example'], methods: ['GET'] } },
        { id: 'dev-prefixed', allow: { roles: ['dev'], services: ['prefixed'] } },
        { id: 'dev-openai', allow: { roles: ['dev'], services: ['openai'] } },
        { id: 'dev-git', allow: { roles: ['dev'], services: ['git'] } },
      ],
    });
    await node.setCredential('example-key', { value: SECRET });
    await node.setCredential('prefixed-key', { value: PREFIXED_SECRET });
    await node.setCredential('git-cred', { username: 'nexus-bot', password: GIT_PASSWORD });
  });

  afterAll(async () => {
    await node?.stop();
    await up?.close();
    await prefixed?.close();
    await gitServer?.close();
  });

  it('curl over https (CONNECT, the run CA) and plain http: signed, injected, scrubbed; unowned hosts refused', async () => {
    up.reset();
    prefixed.reset();
    const script = [
      'echo "--- https"; curl -sS "https://api.example.test/v1/items?x=1"',
      'echo; echo "--- http"; curl -sS "http://api.example.test/v1/plain"',
      // Same policy as path mode: this service allows GET only.
      'echo; echo "--- post"; curl -sS -w "\\n%{http_code}" -X POST -d a=1 "https://api.example.test/v1/items"',
      'echo; echo "--- prefixed"; curl -sS "https://app.prefixed.test/api/1.0/users/me"',
      'echo; echo "--- outside"; curl -sS -w "\\n%{http_code}" "https://app.prefixed.test/other"',
      'echo; echo "--- unowned-http"; curl -sS -w "\\n%{http_code}" "http://unowned.test/x"',
      'echo; echo "--- unowned-https"; curl -sS "https://unowned.test/x" 2>&1; echo "exit=$?"',
      'echo "--- hop"; curl -sS -w "\\n%{http_code}" -H "Host: app.prefixed.test" "https://api.example.test/api/1.0/x"',
      // Attacks: dot segments (raw and encoded) to leave the service for the Authority's
      // routes or another service are refused by the routing rules, before any signing.
      'echo; echo "--- dots-http"; curl -sS --path-as-is -w "\\n%{http_code}" "http://api.example.test/../v1/leases/renew"',
      'echo; echo "--- dots-tunnel"; curl -sS --path-as-is -w "\\n%{http_code}" "https://app.prefixed.test/api/1.0/../../prefixed/x"',
      'echo; echo "--- dots-encoded"; curl -sS -w "\\n%{http_code}" "https://api.example.test/%2e%2e/v1/agent/services"',
      'echo; echo "--- absolute-in-tunnel"; curl -sS -w "\\n%{http_code}" --request-target "http://unowned.test/x" "https://api.example.test/"',
      // A client that offers only h2 fails the handshake: ALPN http/1.1 only.
      'echo; echo "--- h2"; openssl s_client -proxy "${HTTPS_PROXY#http://}" -connect api.example.test:443 -servername api.example.test -alpn h2 </dev/null 2>&1; echo "exit=$?"',
      'echo "--- env"; env',
    ].join('\n');
    const r = await node.runAgent('bot', ['sh', '-c', script]);
    expect(r.code).toBe(0);
    const s = sections(r.stdout);

    // https through the tunnel: the upstream got the real credential, the child an echo
    // with it scrubbed.
    const https = JSON.parse(s.https ?? '{}') as { url: string; headers: Record<string, string> };
    expect(https.url).toBe('/v1/items?x=1');
    expect(https.headers.authorization).toBe('Bearer [REDACTED]');
    expect(JSON.parse(s.http ?? '{}')).toMatchObject({ url: '/v1/plain' });
    expect(up.requests.map((q) => `${q.method} ${q.url}`)).toEqual([
      'GET /v1/items?x=1',
      'GET /v1/plain',
    ]);
    for (const q of up.requests) expect(q.headers.authorization).toBe(`Bearer ${SECRET}`);

    expect(s.post).toMatch(/"code":"policy_denied"[\s\S]*\n403$/);
    expect(JSON.parse(s.prefixed ?? '{}')).toMatchObject({ url: '/api/1.0/users/me' });
    expect(prefixed.requests.map((q) => q.url)).toEqual(['/api/1.0/users/me']);
    expect(prefixed.requests[0]?.headers['x-api-key']).toBe(PREFIXED_SECRET);
    expect(s.outside).toMatch(/\n404$/);

    expect(s['unowned-http']).toMatch(/"code":"host_unowned"[\s\S]*\n403$/);
    expect(s['unowned-https']).toMatch(/CONNECT tunnel failed, response 403/);
    expect(s['unowned-https']).toMatch(/exit=56$/);
    // One tunnel serves one host: another service's name in Host is refused.
    expect(s.hop).toMatch(/"code":"host_mismatch"[\s\S]*\n421$/);

    expect(s['absolute-in-tunnel']).toMatch(/"code":"request_invalid"[\s\S]*\n400$/);
    for (const k of ['dots-http', 'dots-tunnel', 'dots-encoded']) {
      expect(s[k]).toMatch(/"code":"path_invalid"[\s\S]*\n400$/);
    }
    expect(s.h2).toMatch(/alert no application protocol/);
    // The child's environment: proxy and CA variables, no credential, no CA key.
    const env = s.env ?? '';
    expect(env).toMatch(/^HTTPS_PROXY=http:\/\/127\.0\.0\.1:\d+$/m);
    expect(env).toMatch(/^https_proxy=http:\/\/127\.0\.0\.1:\d+$/m);
    expect(env).toMatch(/^NO_PROXY=127\.0\.0\.1,localhost,::1$/m);
    expect(env).toMatch(/^NODE_USE_ENV_PROXY=1$/m);
    for (const k of [
      'SSL_CERT_FILE',
      'NODE_EXTRA_CA_CERTS',
      'REQUESTS_CA_BUNDLE',
      'CURL_CA_BUNDLE',
      'AWS_CA_BUNDLE',
      'GIT_SSL_CAINFO',
    ]) {
      expect(env).toMatch(new RegExp(`^${k}=/.+\\.pem$`, 'm'));
    }
    for (const secret of [SECRET, PREFIXED_SECRET, r.token]) {
      expect(r.stdout).not.toContain(secret);
      expect(r.stderr).not.toContain(secret);
    }
    expect(r.stdout).not.toContain('PRIVATE KEY');

    // Audited like path mode, under the service's name.
    const audit = await node.admin<{ records: AuditRow[] }>('GET', '/v1/audit?limit=1000');
    const rows = audit.body.records.filter((x) => x.kind === 'request');
    expect(rows.some((x) => x.path === '/v1/items' && x.decision === 'allow')).toBe(true);
    expect(rows.some((x) => x.path === '/v1/items' && x.decision === 'deny')).toBe(true);
  });

  it('the CA is name-constrained to the owned hosts and removed with the run', async () => {
    const r = await node.runAgent('bot', [
      'sh',
      '-c',
      'openssl x509 -in "$NODE_EXTRA_CA_CERTS" -noout -text; echo "--- dir"; echo "$NODE_EXTRA_CA_CERTS"',
    ]);
    expect(r.code).toBe(0);
    const s = r.stdout;
    expect(s).toMatch(/Name Constraints: critical/);
    const permitted = /Permitted:\n((?:\s+DNS:.+\n)+)/.exec(s)?.[1] ?? '';
    expect(permitted.trim().split(/\s+/).sort()).toEqual([
      'DNS:api.example.test',
      'DNS:api.openai.com',
      'DNS:app.prefixed.test',
      'DNS:git.example.test',
    ]);
    expect(s).toMatch(/CA:TRUE, pathlen:0/);
    const path = sections(s).dir ?? '';
    expect(spawnSync('test', ['-e', path]).status).not.toBe(0);
  });

  it.skipIf(!HAS_PYTHON)('Python urllib and requests work unchanged', async () => {
    up.reset();
    const py = [
      'import json, urllib.request, urllib.error',
      'out = {}',
      'out["urllib"] = json.load(urllib.request.urlopen("https://api.example.test/v1/py-urllib"))',
      'try:',
      '    urllib.request.urlopen("https://unowned.test/")',
      'except Exception as e:',
      '    out["unowned"] = type(e).__name__ + ": " + str(e)',
      'try:',
      '    import requests',
      '    out["requests"] = requests.get("https://api.example.test/v1/py-requests?q=1").json()',
      'except ImportError:',
      '    pass',
      'print(json.dumps(out))',
    ].join('\n');
    const r = await node.runAgent('bot', ['python3', '-c', py]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as Record<
      string,
      { url: string; headers: Record<string, string> } | string
    >;
    expect(out.urllib).toMatchObject({
      url: '/v1/py-urllib',
      headers: { authorization: 'Bearer [REDACTED]' },
    });
    expect(String(out.unowned)).toMatch(/403/);
    const expected = ['GET /v1/py-urllib'];
    if (HAS_REQUESTS) {
      expect(out.requests).toMatchObject({ url: '/v1/py-requests?q=1' });
      expected.push('GET /v1/py-requests?q=1');
    }
    expect(up.requests.map((q) => `${q.method} ${q.url}`)).toEqual(expected);
    for (const q of up.requests) expect(q.headers.authorization).toBe(`Bearer ${SECRET}`);
    expect(r.stdout).not.toContain(SECRET);
  });

  it('Node with undici EnvHttpProxyAgent (https and http tunnels) works unchanged', async () => {
    up.reset();
    const r = await node.runAgent('bot', [process.execPath, NODE_CLIENT]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as Record<string, { url: string } | string>;
    expect(out.https).toMatchObject({ url: '/v1/node-https' });
    expect(out.http).toMatchObject({ url: '/v1/node-http' });
    // undici reports a refused CONNECT as a failed request (no response to read).
    expect(String(out.unowned)).not.toMatch(/^status /);
    expect(up.requests.map((q) => `${q.method} ${q.url}`)).toEqual([
      'GET /v1/node-https',
      'GET /v1/node-http',
    ]);
    for (const q of up.requests) expect(q.headers.authorization).toBe(`Bearer ${SECRET}`);
    expect(r.stdout).not.toContain(SECRET);
  });

  it('the openai SDK with its default base URL goes through HTTPS_PROXY (plain fetch, Node 20 too)', async () => {
    up.reset();
    // The agent's own key variable holds whatever it likes: Nexus never forwards it.
    const r = await node.runAgent('bot', [process.execPath, OPENAI_CLIENT], {
      args: ['--env', 'none'],
      env: { OPENAI_API_KEY: 'sk-agent-held-placeholder' },
    });
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as {
      completion?: { url: string; headers: Record<string, string> };
      error?: string;
    };
    expect(out.error).toBeUndefined();
    expect(out.completion).toMatchObject({
      url: '/v1/chat/completions',
      headers: { authorization: 'Bearer [REDACTED]' },
    });
    expect(up.requests.map((q) => `${q.method} ${q.url}`)).toEqual(['POST /v1/chat/completions']);
    expect(up.requests[0]?.headers.authorization).toBe(`Bearer ${SECRET}`);
    expect(up.requests[0]?.rawHeaders.join('\n')).not.toContain('sk-agent-held-placeholder');
    expect(r.stdout).not.toContain(SECRET);
  });

  it('git clone and git push over HTTPS work unchanged (Basic injected by Nexus)', async () => {
    const script = [
      'set -e',
      'git clone -q https://git.example.test/repo.git r',
      'cd r',
      'echo change > f && git add f',
      'git -c user.name=a -c user.email=a@a commit -q -m pushed-through-nexus',
      'git push -q origin main',
      'echo "--- config"; cat .git/config',
    ].join('\n');
    const r = await node.runAgent('bot', ['sh', '-c', script], {
      env: { GIT_TERMINAL_PROMPT: '0' },
    });
    expect(r.stderr).not.toMatch(/fatal|error/);
    expect(r.code).toBe(0);
    expect(gitServer.log()).toEqual(['pushed-through-nexus', 'seed']);
    const want = `Basic ${Buffer.from(`nexus-bot:${GIT_PASSWORD}`).toString('base64')}`;
    expect(gitServer.authorizations.length).toBeGreaterThanOrEqual(4);
    for (const a of gitServer.authorizations) expect(a).toBe(want);
    // The clone holds no credential; the agent saw neither the password nor its encoding.
    expect(sections(r.stdout).config).toContain('url = https://git.example.test/repo.git');
    for (const secret of [GIT_PASSWORD, want.slice('Basic '.length)]) {
      expect(r.stdout).not.toContain(secret);
      expect(r.stderr).not.toContain(secret);
    }
  });

  it.skipIf(!HAS_BWRAP)(
    'works under --sandbox: the CA file is visible to the command',
    async () => {
      up.reset();
      const r = await node.runAgent(
        'bot',
        ['sh', '-c', 'curl -sS https://api.example.test/v1/sandboxed'],
        {
          args: ['--sandbox'],
        },
      );
      expect(r.stderr).not.toContain('curl:');
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ url: '/v1/sandboxed' });
      expect(up.requests[0]?.headers.authorization).toBe(`Bearer ${SECRET}`);
    },
  );

  it('--no-forward-proxy sets no proxy or CA variable', async () => {
    const r = await node.runAgent('bot', ['sh', '-c', 'env'], { args: ['--no-forward-proxy'] });
    expect(r.code).toBe(0);
    // (This host's own CA variables may be inherited; none of them is the run's.)
    expect(r.stdout).not.toMatch(/^(HTTPS?_PROXY|https?_proxy|NODE_USE_ENV_PROXY)=/m);
    expect(r.stdout).not.toContain('nexus-run-ca-');
    expect(r.stdout).toMatch(/^NEXUS_PROXY=/m);
  });
});
