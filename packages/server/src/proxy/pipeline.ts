/**
 * The proxy request pipeline: verify, decide, audit, inject, forward, scrub.
 *
 * Order (docs/spec/nexus-v1.md §8): route -> lease and signature (headers only, before any
 * body byte is read) -> body (bounded) and digest -> replay -> policy -> durable audit
 * record -> strip and inject -> forward -> scrubbed response -> outcome record.
 *
 * MUST: nothing reaches the upstream unless every check passed and the request's audit
 * record is durable. MUST: no credential value, derived token or raw agent input appears
 * in an error, a log line or an audit record.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import type { Dispatcher } from 'undici';
import {
  NexusError,
  isNexusError,
  verifyRequestBody,
  type ErrorCode,
  type VerifiedRequest,
} from '@nexus/protocol';
import type { Authority } from '../authority/authority.js';
import type {
  AppliedAuth,
  Mechanic,
  MechanicContext,
  OutboundRequest,
} from '../mechanics/mechanic.js';
import type { AuditRecord } from '../audit/record.js';
import { parseRoute, type Route } from './route.js';
import { forwardableRequestHeaders } from './strip-headers.js';
import type { ReplayCache } from './replay-cache.js';
import { readBody } from './read-body.js';
import { createRequestVerifier } from './verify-request.js';
import { sendProblem } from './problem.js';
import { createResponseScrubber } from './response.js';
import { relayRedacted } from './relay.js';
import { randomId } from '../util/ids.js';
import type { Logger } from '../util/logger.js';
import { serverDigest } from '../util/digest.js';

/** One configured service as the pipeline uses it. */
export interface ServiceRuntime {
  readonly name: string;
  readonly upstream: URL;
  readonly mechanic: Mechanic;
  readonly credential: string | undefined;
  /** Lower-case response header names removed before the agent sees the response. */
  readonly removeHeaders: readonly string[];
  readonly dispatcher: Dispatcher;
  readonly headersTimeoutMs: number;
  readonly bodyTimeoutMs: number;
  /**
   * Marks the runtime in use by one request; the returned function releases it. A reload
   * closes a replaced runtime's pool and mechanic only once no request holds it.
   */
  readonly acquire?: () => () => void;
}

export interface PolicyDecision {
  readonly decision: 'allow' | 'deny';
  readonly ruleIds: readonly string[];
  readonly reasons: readonly string[];
}

export interface PolicyEngine {
  readonly hash: string;
  evaluate(input: {
    agent: string;
    roles: string[];
    act?: string;
    service: string;
    method: string;
    path: string;
    intent: string;
    now: number;
  }): PolicyDecision;
}

export interface AuditAppender {
  append(record: AuditRecord): Promise<unknown>;
}

export interface CredentialResolver {
  resolve(name: string): Promise<{ name: string; version: number; fields: Record<string, string> }>;
}

export interface PipelineDeps {
  readonly publicUrl: string;
  readonly audience: string;
  readonly issuer: string;
  readonly maxBodyBytes: number;
  readonly signatureSkewSeconds: number;
  readonly leaseSkewSeconds: number;
  readonly minSecretLength: number;
  readonly services: ReadonlyMap<string, ServiceRuntime>;
  readonly authority: Authority;
  readonly policy: () => PolicyEngine;
  readonly replay: ReplayCache;
  readonly audit: AuditAppender;
  readonly vault: CredentialResolver;
  readonly logger: Logger;
  readonly clock: () => number;
  /** Signatures that could predate this time (ms) are refused; 0: none (app/replay-state.ts). */
  readonly notBefore: number;
}

/** Fields known about a request as it goes through the pipeline, for its audit record. */
interface Trace {
  requestId: string;
  started: number;
  method: string;
  service?: string;
  path?: string;
  verified?: VerifiedRequest;
  decision?: PolicyDecision;
  policyHash?: string;
  credential?: { name: string; version: number };
  bytesIn: number;
  lease?: string;
}

function signatureOf(t: Trace): AuditRecord['signature'] {
  const v = t.verified;
  if (v === undefined || t.lease === undefined) return undefined;
  return { input: v.signatureInput, value: v.signature, lease: t.lease };
}

function baseRecord(t: Trace, kind: AuditRecord['kind'], now: number): AuditRecord {
  // Fields unknown for a request refused early (no verified lease yet) stay undefined and
  // are left out of the canonical JSON.
  const v = t.verified;
  return {
    v: 1,
    kind,
    time: new Date(now).toISOString(),
    request_id: t.requestId,
    agent: v?.agent,
    lease_id: v?.leaseId,
    act: v?.claims.act?.sub,
    task: v?.claims.nexus_task,
    service: t.service,
    method: t.method,
    path: t.path,
    intent: v?.intent,
    decision: t.decision?.decision ?? 'deny',
    rule_ids: [...(t.decision?.ruleIds ?? [])],
    policy_hash: t.policyHash,
    credential: t.credential,
    signature: signatureOf(t),
  } as AuditRecord;
}

/** Builds the request handler for the proxy listener's service routes. */
export function createPipeline(deps: PipelineDeps) {
  const { clock, logger } = deps;
  const verifyHeaders = createRequestVerifier({ ...deps, clock });

  async function reject(
    res: ServerResponse,
    t: Trace,
    err: unknown,
    bodyConsumed: boolean,
  ): Promise<void> {
    const nexusErr = isNexusError(err)
      ? err
      : new NexusError('internal_error', undefined, { cause: err });
    if (!isNexusError(err)) {
      logger.error(
        { request_id: t.requestId, err: errorSummary(err) },
        'unexpected pipeline error',
      );
    }
    const now = clock();
    try {
      await deps.audit.append({
        ...baseRecord(t, 'request', now),
        error_code: nexusErr.code,
        duration_ms: now - t.started,
        bytes_in: t.bytesIn,
      });
    } catch (auditErr) {
      logger.error({ request_id: t.requestId, err: errorSummary(auditErr) }, 'audit write failed');
      sendProblem(res, new NexusError('audit_unavailable'), t.requestId, !bodyConsumed);
      return;
    }
    sendProblem(res, nexusErr, t.requestId, !bodyConsumed);
  }

  return async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // The service runtime this request uses stays open until the request is done.
    const held: { release?: () => void } = {};
    try {
      await handleRequest(req, res, held);
    } finally {
      held.release?.();
    }
  };

  async function handleRequest(
    req: IncomingMessage,
    res: ServerResponse,
    held: { release?: () => void },
  ): Promise<void> {
    const t: Trace = {
      requestId: randomId(12),
      started: clock(),
      method: req.method ?? 'GET',
      bytesIn: 0,
    };
    res.setHeader('nexus-request-id', t.requestId);
    let bodyConsumed = false;
    let route: Route;
    let service: ServiceRuntime | undefined;
    let body: Buffer;
    try {
      route = parseRoute(req.url ?? '');
      t.path = route.path;
      service = deps.services.get(route.service);
      if (service === undefined) throw new NexusError('service_unknown');
      held.release = service.acquire?.();
      t.service = service.name;
      const verified = await verifyHeaders(req);
      t.verified = verified;
      t.lease = req.headers['workload-identity-token'] as string | undefined;
      const agent = deps.authority.agent(verified.agent);
      if (agent === undefined) throw new NexusError('lease_invalid');
      if (agent.disabled) throw new NexusError('agent_disabled');

      body = await readBody(req, deps.maxBodyBytes);
      bodyConsumed = true;
      t.bytesIn = body.length;
      await verifyRequestBody(verified, req.headers, body, serverDigest);
      deps.replay.checkAndRecord(verified.leaseId, verified.nonce, verified.expires);

      const policy = deps.policy();
      t.policyHash = policy.hash;
      t.decision = policy.evaluate({
        agent: verified.agent,
        // The lease's roles that the agent still has: a role taken away (config reload,
        // admin API) stops counting at once, not at the next renewal; one added counts
        // from the next lease.
        roles: verified.claims.scope.split(' ').filter((r) => r !== '' && agent.roles.includes(r)),
        act: verified.claims.act?.sub,
        service: service.name,
        method: t.method,
        path: route.path,
        intent: verified.intent,
        now: clock(),
      });
      if (t.decision.decision !== 'allow') throw new NexusError('policy_denied');
    } catch (err) {
      await reject(res, t, err, bodyConsumed);
      return;
    }
    await forward(req, res, t, service, route, body);
  }

  async function forward(
    req: IncomingMessage,
    res: ServerResponse,
    t: Trace,
    service: ServiceRuntime,
    route: Route,
    body: Buffer,
  ): Promise<void> {
    const verified = t.verified as VerifiedRequest;
    const ctx: MechanicContext = {
      service: service.name,
      agent: verified.agent,
      act: verified.claims.act?.sub,
      now: clock(),
      lease: t.lease,
      claims: verified.claims,
      credential: (name?: string) => {
        const credentialName = name ?? service.credential;
        if (credentialName === undefined) throw new NexusError('credential_unavailable');
        return deps.vault.resolve(credentialName);
      },
    };
    const basePath = service.upstream.pathname.replace(/\/$/, '');
    const target = `${basePath}${route.rawPath}` || '/';
    let status = 0;
    let bytesOut = 0;
    let redactions = 0;
    let errorCode: string | undefined;
    let secrets: readonly string[] = [];
    let audited = false;
    let upstream: Dispatcher.ResponseData | undefined;
    let piped = false;
    try {
      for (let attempt = 0; attempt < 2; attempt++) {
        const out: OutboundRequest = {
          method: t.method,
          url: new URL(
            `${service.upstream.origin}${target}${route.query ? `?${route.query}` : ''}`,
          ),
          headers: forwardableRequestHeaders(req.headersDistinct, service.mechanic.injectedHeaders),
          body: body.length > 0 ? body : undefined,
        };
        for (const param of service.mechanic.injectedQueryParams)
          out.url.searchParams.delete(param);
        let applied: AppliedAuth;
        try {
          applied = await service.mechanic.apply(out, ctx);
        } catch (err) {
          if (attempt > 0) throw err;
          // Nothing was sent: this request ends here with a single request record.
          await reject(res, t, err, true);
          return;
        }
        t.credential = applied.credential ? { ...applied.credential } : undefined;
        secrets = applied.secrets;
        if (attempt === 0) {
          // Allowed and built. The request record (with the credential name and version)
          // MUST be durable before any byte is forwarded.
          try {
            await deps.audit.append(baseRecord(t, 'request', clock()));
          } catch (err) {
            logger.error({ request_id: t.requestId, err: errorSummary(err) }, 'audit write failed');
            sendProblem(res, new NexusError('audit_unavailable'), t.requestId, false);
            return;
          }
          audited = true;
        }
        upstream = await (out.dispatcher ?? service.dispatcher).request({
          origin: service.upstream.origin,
          path: out.url.pathname + out.url.search,
          method: out.method as Dispatcher.HttpMethod,
          headers: out.headers,
          body: out.body === undefined ? undefined : Buffer.from(out.body),
          headersTimeout: service.headersTimeoutMs,
          bodyTimeout: service.bodyTimeoutMs,
        });
        if (
          upstream.statusCode === 401 &&
          attempt === 0 &&
          service.mechanic.onUnauthorized !== undefined &&
          (await service.mechanic.onUnauthorized(ctx))
        ) {
          await upstream.body.dump();
          upstream = undefined;
          continue;
        }
        break;
      }
      if (upstream === undefined) throw new NexusError('internal_error');
      status = upstream.statusCode;
      const scrubber = createResponseScrubber({
        headers: upstream.headers,
        secrets,
        removeHeaders: service.removeHeaders,
        minSecretLength: deps.minSecretLength,
      });
      redactions += scrubber.headerRedactions;
      res.writeHead(status, scrubber.headers);
      // A streamed response (no upstream Content-Length: SSE, chunked) gets its headers at
      // once; a sized one sends them with its first body bytes, in one write instead of two.
      if (upstream.headers['content-length'] === undefined) res.flushHeaders();
      piped = true;
      if (scrubber.coded) {
        const scrub = scrubber.stream();
        const counter = new Transform({
          transform(chunk: Buffer, _enc, cb) {
            bytesOut += chunk.length;
            cb(null, chunk);
          },
        });
        try {
          await pipeline(upstream.body, scrub, counter, res);
        } finally {
          redactions += scrub.redactions;
        }
      } else {
        const redactor = scrubber.redactor();
        try {
          await relayRedacted(upstream.body, redactor, res, (n) => (bytesOut += n));
        } finally {
          redactions += redactor.count;
        }
      }
    } catch (err) {
      // An upstream body we never read would hold its pooled connection open.
      if (upstream !== undefined && !piped) {
        upstream.body.on('error', () => undefined).destroy();
      }
      const code = upstreamErrorCode(err);
      errorCode = code;
      if (!res.headersSent) {
        sendProblem(res, new NexusError(code as ErrorCode), t.requestId, false);
      } else {
        // Headers are gone: the only honest signal left is an aborted response.
        res.destroy();
      }
      if (code === 'internal_error') {
        logger.error({ request_id: t.requestId, err: errorSummary(err) }, 'forwarding failed');
      }
    } finally {
      const now = clock();
      if (audited)
        deps.audit
          .append({
            ...baseRecord(t, 'outcome', now),
            upstream_status: status || undefined,
            bytes_in: t.bytesIn,
            bytes_out: bytesOut,
            duration_ms: now - t.started,
            redactions,
            error_code: errorCode,
            signature: undefined,
          })
          .catch((err: unknown) =>
            logger.error(
              { request_id: t.requestId, err: errorSummary(err) },
              'audit outcome write failed',
            ),
          );
    }
  }
}

/** Maps a forwarding failure to a stable code without exposing its details. */
export function upstreamErrorCode(err: unknown): ErrorCode {
  if (isNexusError(err)) return err.code;
  const code = (err as { code?: unknown } | undefined)?.code;
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return 'upstream_timeout';
    case 'ECONNREFUSED':
    case 'ECONNRESET':
    case 'ENOTFOUND':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EAI_AGAIN':
    case 'UND_ERR_SOCKET':
    case 'UND_ERR_CLOSED':
    case 'UND_ERR_DESTROYED':
    case 'CERT_HAS_EXPIRED':
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return 'upstream_unreachable';
    case 'ERR_STREAM_PREMATURE_CLOSE':
      return 'upstream_unreachable';
    default:
      return 'internal_error';
  }
}

/** What {@link errorSummary} logs: names and codes, down the `cause` chain. */
export interface ErrorSummary {
  name?: string;
  code?: string;
  /** The underlying error's summary (e.g. `SQLITE_BUSY` under `audit_unavailable`). */
  cause?: ErrorSummary;
}

/**
 * What may be logged about an error: its name and code, and those of its causes (at most
 * 4 deep), never a message (URLs, values).
 */
export function errorSummary(err: unknown, depth = 0): ErrorSummary {
  if (err === null || typeof err !== 'object') return {};
  const e = err as { name?: unknown; code?: unknown; cause?: unknown };
  const cause =
    depth < 3 && e.cause !== null && typeof e.cause === 'object'
      ? errorSummary(e.cause, depth + 1)
      : undefined;
  return {
    name: typeof e.name === 'string' ? e.name : undefined,
    code: typeof e.code === 'string' ? e.code : undefined,
    ...(cause === undefined ? {} : { cause }),
  };
}
