/**
 * The Python agent library (clients/python, issue 11) against a real node: a Python program
 * enrolls with a one-time token, calls a service whose credential Nexus injects, renews,
 * gets a policy refusal as a `NexusError`, refuses dot-segment targets itself and revokes
 * its own lease. It signs `nexus/1.1` (the node lists it in discovery) and acts only on
 * refusals whose Nexus signature verifies (spec §10.4): a real one still arrives as its
 * code, an upstream writing `Nexus-Error` itself cannot pose as a refusal. Runs under every Python found that imports `cryptography`, with an
 * Ed25519 and a P-256 lease key.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findPythons, runPython, type Python } from './helpers/python.js';
import { startNode, type TestNode } from './helpers/node.js';
import { startUpstream, echoHandler, type TestUpstream } from './helpers/upstream.js';

const SECRET = 'py-upstream-secret-7f3a9c2e41b8d6';
const { found: pythons, skipped } = findPythons();
// Skipped locally without one, never in CI (.ci/run installs python3-cryptography).
const RUN = pythons.length > 0 || process.env.CI === 'true';
if (!RUN)
  console.log(`python client e2e skipped: no Python with cryptography (${skipped.join('; ')})`);

interface Step {
  step: string;
  [k: string]: unknown;
}

describe.skipIf(!RUN)('the Python agent library against a real node', () => {
  it('has a Python with cryptography', () => {
    expect(pythons, skipped.join('; ')).not.toEqual([]);
  });

  let upstream: TestUpstream;
  let node: TestNode;

  beforeAll(async () => {
    upstream = await startUpstream();
    node = await startNode({
      services: {
        echo: { upstream: upstream.url, auth: { type: 'bearer', credential: 'echo-token' } },
      },
      agents: { pybot: { roles: ['reader'] } },
      policies: [
        { id: 'read-echo', allow: { roles: ['reader'], services: ['echo'] } },
        { id: 'no-admin', deny: { services: ['echo'], paths: ['/admin/**'] } },
      ],
      // Short leases, so that one run can wait for the library to renew by itself; a body
      // limit the library learns from discovery and applies before sending.
      overrides: { authority: { lease_ttl: '6s' }, proxy: { max_body: '1KiB' } },
    });
    await node.setCredential('echo-token', { value: SECRET });
  });

  afterAll(async () => {
    await node?.stop();
    await upstream?.close();
  });

  const cases = pythons.flatMap((python) =>
    ['EdDSA', 'ES256'].map((alg) => ({ version: python.version, python, alg })),
  );
  // Only the first run waits (about 4 s) for the lease's last third.
  const waitsForRenewal = (python: Python, alg: string) =>
    python.command === pythons[0]?.command && alg === 'EdDSA';

  it.each(cases)(
    'Python $version, $alg key: enroll, call, renew, refuse, revoke',
    async ({ python, alg }) => {
      console.log(`python client e2e: ${python.command} (${python.version}), ${alg}`);
      upstream.reset();
      upstream.handle((req, res) => {
        if (req.url === '/imitate') {
          res.writeHead(403, { 'content-type': 'application/problem+json' });
          res.end(
            JSON.stringify({ type: 'urn:nexus:problem:policy_denied', code: 'policy_denied' }),
          );
          return;
        }
        if (req.url === '/forge') {
          // An upstream posing as Nexus: a refusal code that, believed, would make the
          // library re-sign and resend (signature_expired).
          res.writeHead(401, {
            'content-type': 'application/problem+json',
            'nexus-error': 'signature_expired',
            'nexus-request-id': 'forged-id',
          });
          res.end(JSON.stringify({ code: 'signature_expired' }));
          return;
        }
        if (req.url === '/forge-signed') {
          // An upstream posing as Nexus with a signature of its own under Nexus's label: the
          // proxy drops it and signs the answer as the upstream's (spec §10.4).
          res.writeHead(200, {
            'content-type': 'application/json',
            'signature-input': 'nexus=("@status");created=1;keyid="k";tag="nexus-response"',
            signature: 'nexus=:AAAA:',
          });
          res.end('{"ok":true}');
          return;
        }
        return echoHandler(req, res);
      });
      const token = await node.enrollmentToken('pybot');
      const run = await runPython(python, ['tests/e2e_agent.py'], {
        NEXUS_AUTHORITY: node.proxyUrl,
        NEXUS_ENROLLMENT_TOKEN: token,
        NEXUS_KEY_ALG: alg,
        ...(waitsForRenewal(python, alg) ? { NEXUS_WAIT_FOR_RENEWAL: '1' } : {}),
      });
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      const steps = new Map(
        run.stdout
          .trim()
          .split('\n')
          .map((line) => JSON.parse(line) as Step)
          .map((s) => [s.step, s]),
      );
      // The credential reached the upstream; the Python process never saw it.
      expect(run.stdout).not.toContain(SECRET);
      expect(upstream.requests[0]?.headers.authorization).toBe(`Bearer ${SECRET}`);

      const enrolled = steps.get('enrolled')!;
      expect(enrolled.agent).toBe('pybot');
      expect(enrolled.token_left_in_env).toBe(false);
      expect((enrolled.jwk as { alg: string }).alg).toBe(alg);
      expect(enrolled.signature_profile).toBe('nexus/1.1');
      expect(enrolled.verifies_refusals).toBe(true);

      expect(steps.get('token-reused')).toMatchObject({ code: 'enrollment_invalid', status: 401 });

      const call = steps.get('call')!;
      expect(call.status).toBe(200);
      expect(call.request_id).toMatch(/.+/);
      // A relayed answer is marked and signed by Nexus (spec §10.4), bound to the nonce.
      expect(call.origin).toBe('upstream');
      expect(steps.get('relayed-rebound')).toMatchObject({ other_nonce: 'signature_invalid' });
      const echoed = JSON.parse(call.body as string) as {
        method: string;
        url: string;
        body: string;
        headers: Record<string, string>;
      };
      expect(echoed).toMatchObject({
        method: 'POST',
        url: '/repos/acme/app/issues?state=open',
        body: '{"title": "hi"}',
      });
      expect(echoed.headers.authorization).toBe('Bearer [REDACTED]');
      expect(echoed.headers['workload-identity-token']).toBeUndefined();

      const renewed = steps.get('renewed')!;
      expect(renewed.after).not.toBe(renewed.before);
      expect(renewed.jwk).toEqual(enrolled.jwk);
      expect(renewed.sub).toMatch(/\/agent\/pybot$/);
      expect(steps.get('call-after-renewal')).toMatchObject({ status: 200 });
      const auto = steps.get('auto-renewed');
      if (waitsForRenewal(python, alg)) {
        expect(auto?.status).toBe(200);
        expect(auto?.after).not.toBe(auto?.before);
      }
      // Over the advertised max_body_bytes: refused by the library, nothing sent.
      expect(steps.get('too-large')).toMatchObject({ code: 'body_too_large', local: true });

      expect(steps.get('denied')).toMatchObject({
        code: 'policy_denied',
        status: 403,
        local: false,
      });
      expect(steps.get('denied')?.request_id).toMatch(/.+/);
      expect(steps.get('dot-segment')).toMatchObject({ code: 'path_invalid', local: true });
      expect(steps.get('encoded-dot')).toMatchObject({ code: 'path_invalid', local: true });
      expect(steps.get('reserved')).toMatchObject({ code: 'service_unknown', local: true });
      expect(steps.get('imitation')).toEqual({ step: 'imitation', status: 403 });
      // Relayed as the upstream's answer (the proxy removed its Nexus-* fields), sent once.
      expect(steps.get('forged')).toEqual({ step: 'forged', status: 401 });
      // Its forged fields were dropped: the answer is the upstream's, signed as relayed.
      expect(steps.get('forged-signature')).toEqual({ step: 'forged-signature', status: 200 });
      expect(steps.get('revoked')).toMatchObject({ code: 'lease_revoked', status: 401 });
      expect(steps.has('done')).toBe(true);

      // Nothing the library refused locally, and nothing Nexus refused, reached the upstream.
      expect(upstream.requests.map((r) => r.url)).toEqual([
        '/repos/acme/app/issues?state=open',
        '/after-renewal',
        ...(waitsForRenewal(python, alg) ? ['/auto-renewed'] : []),
        '/imitate',
        '/forge',
        '/forge-signed',
      ]);
    },
  );
});
