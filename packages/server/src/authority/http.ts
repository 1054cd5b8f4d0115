/**
 * The Authority's HTTP endpoints, served on the proxy listener: discovery, JWKS, lease
 * issue (enrollment), signed renewal and signed self-revocation.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  NexusError,
  delegatedServices,
  isNexusError,
  verifyRequestBody,
} from '@nexus-proxy/protocol';
import { agentFromSub, rolesHeld, type Authority, type IssuedLease } from './authority.js';
import type { ReplayGuard } from '../proxy/replay-cache.js';
import { discardBody, readBody } from '../proxy/read-body.js';
import { createRequestVerifier } from '../proxy/verify-request.js';
import { sendProblem } from '../proxy/problem.js';
import { randomId } from '../util/ids.js';
import type { Logger } from '../util/logger.js';
import { errorSummary } from '../proxy/pipeline.js';
import { serverDigest } from '../util/digest.js';
import type { AgentReachService } from '../config/reach.js';
import { parsePassthroughBody, type createPassthroughDecider } from './passthrough.js';

export interface AuthorityHttpDeps {
  readonly authority: Authority;
  readonly replay: ReplayGuard;
  readonly publicUrl: string;
  readonly issuer: string;
  readonly signatureSkewSeconds: number;
  readonly leaseSkewSeconds: number;
  readonly clock: () => number;
  readonly logger: Logger;
  readonly notBefore: number;
  /** The proxy's request body limit (`proxy.max_body`), advertised as `max_body_bytes`. */
  readonly maxBodyBytes?: number;
  /** The services an agent's policy can allow, with their env and hosts (issue 11). */
  readonly reach?: (agent: string, roles: readonly string[]) => readonly AgentReachService[];
  /** Decides and audits a blind tunnel of `nexus run` (authority/passthrough.ts). */
  readonly passthrough?: ReturnType<typeof createPassthroughDecider>;
}

const MAX_AUTHORITY_BODY = 16 * 1024;

function json(res: ServerResponse, status: number, value: unknown, cache = 'no-store'): void {
  const text = JSON.stringify(value);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': cache,
  });
  res.end(text);
}

function leaseResponse(issued: IssuedLease, agent: string, proxyUrl: string) {
  return {
    lease: issued.lease,
    expires_at: new Date(issued.expiresAt).toISOString(),
    agent,
    proxy_url: proxyUrl,
  };
}

export function createAuthorityHandler(deps: AuthorityHttpDeps) {
  const { authority } = deps;
  const verifyHeaders = createRequestVerifier({ ...deps, audience: deps.publicUrl });
  return async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = randomId(12);
    res.setHeader('nexus-request-id', requestId);
    try {
      const path = (req.url ?? '').split('?')[0];
      if (path === '/.well-known/nexus-configuration' || path === '/.well-known/jwks.json') {
        if (req.method !== 'GET' && req.method !== 'HEAD')
          throw new NexusError('method_not_allowed');
        const doc =
          path === '/.well-known/jwks.json'
            ? authority.keys.jwks()
            : {
                ...authority.discovery(),
                // The tolerances this node verifies with (spec §1.2, §11.1), so a client
                // can tell how far its clock may drift.
                lease_skew: deps.leaseSkewSeconds,
                signature_skew: deps.signatureSkewSeconds,
                ...(deps.maxBodyBytes === undefined ? {} : { max_body_bytes: deps.maxBodyBytes }),
              };
        json(res, 200, doc, 'max-age=60');
        return;
      }
      if (path === '/v1/leases') {
        if (req.method !== 'POST') throw new NexusError('method_not_allowed');
        const body = await readBody(req, MAX_AUTHORITY_BODY);
        let parsed: { enrollment_token?: unknown; jwk?: unknown };
        try {
          parsed = JSON.parse(body.toString('utf8')) as typeof parsed;
        } catch {
          throw new NexusError('validation_failed', 'body is not JSON');
        }
        if (parsed === null || typeof parsed !== 'object')
          throw new NexusError('validation_failed');
        const issued = await authority.enroll(parsed.enrollment_token, parsed.jwk);
        json(res, 201, leaseResponse(issued, agentName(issued), deps.publicUrl));
        return;
      }
      if (path === '/v1/leases/renew') {
        if (req.method !== 'POST') throw new NexusError('method_not_allowed');
        const verified = await verifyHeaders(req);
        const body = await readBody(req, MAX_AUTHORITY_BODY);
        await verifyRequestBody(verified, req.headers, body, serverDigest);
        await deps.replay.checkAndRecord(verified.leaseId, verified.nonce, verified.expires);
        const issued = await authority.renew(verified);
        json(res, 201, leaseResponse(issued, agentName(issued), deps.publicUrl));
        return;
      }
      if (path === '/v1/leases/delegate') {
        // Delegation (spec §12.5): proof of possession of the delegating lease, as for
        // renewal; the body names the sub-agent's public key and the narrowed grant.
        if (req.method !== 'POST') throw new NexusError('method_not_allowed');
        const verified = await verifyHeaders(req);
        const body = await readBody(req, MAX_AUTHORITY_BODY);
        await verifyRequestBody(verified, req.headers, body, serverDigest);
        await deps.replay.checkAndRecord(verified.leaseId, verified.nonce, verified.expires);
        let parsed: unknown;
        try {
          parsed = JSON.parse(body.toString('utf8'));
        } catch {
          throw new NexusError('validation_failed', 'body is not JSON');
        }
        const issued = await authority.delegate(verified, parsed);
        json(res, 201, leaseResponse(issued, agentName(issued), deps.publicUrl));
        return;
      }
      if (path === '/v1/leases/revoke') {
        // Self-revocation (spec §12.3): proof of possession exactly as for renewal, so an
        // agent (`nexus run` at exit) ends its own lease without operator rights, and
        // nobody without the lease key can end it.
        if (req.method !== 'POST') throw new NexusError('method_not_allowed');
        const verified = await verifyHeaders(req);
        const body = await readBody(req, MAX_AUTHORITY_BODY);
        await verifyRequestBody(verified, req.headers, body, serverDigest);
        await deps.replay.checkAndRecord(verified.leaseId, verified.nonce, verified.expires);
        await authority.revokeLease(verified.leaseId);
        deps.logger.info(
          {
            request_id: requestId,
            agent: agentFromSub(verified.claims.sub),
            lease_id: verified.leaseId,
          },
          'lease revoked by its holder',
        );
        res.writeHead(204, { 'cache-control': 'no-store' });
        res.end();
        return;
      }
      if (path === '/v1/agent/services' && deps.reach !== undefined) {
        // What `nexus run` sets up for its child (base-URL and forward-proxy mode). Signed
        // like a renewal: only a lease holder learns the names of the services it may use.
        if (req.method !== 'GET') throw new NexusError('method_not_allowed');
        const verified = await verifyHeaders(req);
        const body = await readBody(req, MAX_AUTHORITY_BODY);
        await verifyRequestBody(verified, req.headers, body, serverDigest);
        await deps.replay.checkAndRecord(verified.leaseId, verified.nonce, verified.expires);
        // The lease's roles the agent still has, as the proxy and passthrough match them
        // (rolesHeld): a role a reload took away is no longer listed. An unknown or
        // disabled agent is refused as the proxy refuses it.
        const agent = authority.agent(verified.agent);
        if (agent === undefined) throw new NexusError('lease_invalid');
        if (agent.disabled) throw new NexusError('agent_disabled');
        const roles = rolesHeld(verified.claims.scope, agent.roles);
        // A sub-lease narrowed by service lists only its delegated services (spec §12.5):
        // the proxy refuses the others (service_not_delegated), so listing them would only
        // tell a sub-agent what its delegator can reach.
        const delegated = delegatedServices(verified.claims);
        const services = deps.reach(agent.name, roles);
        json(res, 200, {
          services:
            delegated === undefined ? services : services.filter((s) => delegated.includes(s.name)),
        });
        return;
      }
      if (path === '/v1/agent/passthrough' && deps.passthrough !== undefined) {
        // A blind tunnel to a host no service owns (spec §12.6): signed like a renewal,
        // decided by the passthrough rules and audited before the answer.
        if (req.method !== 'POST') throw new NexusError('method_not_allowed');
        const verified = await verifyHeaders(req);
        const body = await readBody(req, MAX_AUTHORITY_BODY);
        await verifyRequestBody(verified, req.headers, body, serverDigest);
        await deps.replay.checkAndRecord(verified.leaseId, verified.nonce, verified.expires);
        const target = parsePassthroughBody(body.toString('utf8'));
        const rule = await deps.passthrough(verified, target, requestId);
        json(res, 200, { host: target.host, port: target.port, rule });
        return;
      }
      throw new NexusError('not_found');
    } catch (err) {
      const e = isNexusError(err)
        ? err
        : new NexusError('internal_error', undefined, { cause: err });
      // Server-side failures are logged with their cause (e.g. store_busy <- SQLITE_BUSY).
      if (!isNexusError(err) || e.status >= 500)
        deps.logger.error({ request_id: requestId, err: errorSummary(err) }, 'authority error');
      // An oversized body is discarded (bounded) so the client reads the 413, or the
      // connection is closed with the answer.
      const close = e.code === 'body_too_large' && !discardBody(req, MAX_AUTHORITY_BODY);
      sendProblem(res, e, requestId, close);
    }
  };
}

function agentName(issued: IssuedLease): string {
  return issued.claims.sub.slice(issued.claims.sub.lastIndexOf('/') + 1);
}
