/**
 * The proxy request pipeline: verify, decide, audit, inject, forward, scrub.
 *
 * Order (docs/spec/nexus-v1.md §8): route -> lease and signature (headers only, before any
 * body byte is read) -> body (bounded) and digest -> replay -> request shape (method
 * overrides, look-alikes of an injected query parameter) -> limits -> policy -> durable audit
 * record -> strip and inject -> forward -> scrubbed response -> outcome record.
 *
 * MUST: nothing reaches the upstream unless every check passed and the request's audit
 * record is durable. MUST: no credential value, derived token or raw agent input appears
 * in an error, a log line or an audit record. A refusal carries a safe detail (what
 * failed, from server-chosen text and configuration names), the same in the problem and
 * in the audit record.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import type { Dispatcher } from 'undici';
import {
  NexusError,
  checkDelegatedRequest,
  isNexusError,
  safeDetail,
  verifyRequestBody,
  type VerifiedRequest,
} from '@nexus-proxy/protocol';
import { auditDelegation, rolesHeld, type Authority } from '../authority/authority.js';
import type {
  AppliedAuth,
  Mechanic,
  MechanicContext,
  OutboundRequest,
} from '../mechanics/mechanic.js';
import type { AuditRecord } from '../audit/record.js';
import type { NonceClaim } from '../audit/sink.js';
import { parseRoute, type Route } from './route.js';
import { forwardableRawHeaders } from './strip-headers.js';
import type { ReplayGuard } from './replay-cache.js';
import { asBuffer, discardBody, readBody } from './read-body.js';
import { checkBody, checkQuery } from './param-names.js';
import { createRequestVerifier } from './verify-request.js';
import { sendProblem } from './problem.js';
import { signRelayedHeaders } from './sign-response.js';
import { createResponseScrubber } from './response.js';
import { relayRedacted } from './relay.js';
import { randomId } from '../util/ids.js';
import { auditTime, leaseHash } from '../audit/record.js';
import type { Logger } from '../util/logger.js';
import { serverDigest } from '../util/digest.js';
import {
  StageClock,
  type PipelineObserver,
  type PipelineStage,
  type RequestSummary,
} from './observe.js';
import { isLimitRefusal, type Limiter, type LimitRelease } from '../limits/limiter.js';
import { McpExchange } from '../mcp/gateway.js';
import type { McpTarget } from '../mcp/message.js';
import { awaitApproval } from '../approvals/hold.js';
import type { ApprovalQueue } from '../approvals/queue.js';
import type { ApprovalSettings } from '../policy/rule-schema.js';
import type { UpgradeExchange, UpgradeRelay } from './websocket.js';
import type { RequestSpan, Tracing } from '../telemetry/tracing.js';
import { createCostReader, type CostReader, type CostSource } from '../limits/cost.js';

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
  /** `mcp`: an MCP server's endpoint; its JSON-RPC messages are read (mcp/gateway.ts). */
  readonly kind?: 'http' | 'mcp';
  /** Where a response says what it cost, for `cost` limits (limits/cost.ts). */
  readonly cost?: CostSource;
  /**
   * Marks the runtime in use by one request; the returned function releases it. A reload
   * closes a replaced runtime's pool and mechanic only once no request holds it.
   */
  readonly acquire?: () => () => void;
  /**
   * Set when the service accepts WebSocket upgrades (`services.<name>.websocket`);
   * without it an upgrade is denied (proxy/websocket.ts).
   */
  readonly websocket?: { readonly ca?: string | Buffer; readonly connectTimeoutMs: number };
}

export interface PolicyDecision {
  readonly decision: 'allow' | 'deny';
  readonly ruleIds: readonly string[];
  readonly reasons: readonly string[];
  /** Allowed once an operator approves (an `approve` rule matched). */
  readonly approval?: { readonly ruleId: string } & ApprovalSettings;
}

export interface PolicyEngine {
  readonly hash: string;
  evaluate(input: {
    agent: string;
    roles: string[];
    act?: string;
    delegation?: readonly string[];
    service: string;
    method: string;
    path: string;
    intent: string;
    now: number;
    mcp?: McpTarget;
  }): PolicyDecision;
}

export interface AuditAppender {
  /** `claim`: the request's replay record, made with this record (ReplayGuard.claim). */
  append(record: AuditRecord, claim?: NonceClaim): Promise<unknown>;
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
  readonly replay: ReplayGuard;
  readonly audit: AuditAppender;
  readonly vault: CredentialResolver;
  readonly logger: Logger;
  readonly clock: () => number;
  /** Signatures that could predate this time (ms) are refused; 0: none (app/replay-state.ts). */
  readonly notBefore: number;
  /** Stage timings and one summary per request (metrics; proxy/observe.ts). */
  readonly observer?: PipelineObserver;
  /** Rate limits and budgets, checked after verification, before policy and forwarding. */
  readonly limits?: Limiter;
  /** Requests held for approval (`approve` rules); without it they are denied. */
  readonly approvals?: ApprovalQueue;
  /** OpenTelemetry traces (telemetry/tracing.ts); undefined: off, nothing is done. */
  readonly tracing?: Tracing;
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
  /** The replay record to make with the request record (`--workers` on SQLite). */
  claim?: NonceClaim;
  /** For the observer: stage laps, and how the request ended (`ok` or an error code). */
  laps: StageClock;
  code?: string;
  upstreamStatus?: number;
  redactions?: number;
  bytesOut?: number;
  /** Set for a service of kind `mcp`. */
  mcp?: McpExchange;
  /** The request's spans, when tracing is on. */
  span?: RequestSpan;
  /** What the response cost (a service's `cost:`), once read. */
  cost?: number;
}

function signatureOf(t: Trace): AuditRecord['signature'] {
  const v = t.verified;
  if (v === undefined || t.lease === undefined) return undefined;
  return { input: v.signatureInput, value: v.signature, lease_hash: leaseHash(t.lease) };
}

/** What an outcome, a refusal, an approval or a WebSocket record adds to the base fields. */
type RecordFields = Pick<
  AuditRecord,
  | 'upstream_status'
  | 'bytes_in'
  | 'bytes_out'
  | 'duration_ms'
  | 'redactions'
  | 'error_code'
  | 'error_detail'
  | 'approval'
  | 'websocket'
  | 'mcp'
>;

function baseRecord(
  t: Trace,
  kind: AuditRecord['kind'],
  now: number,
  fields?: RecordFields,
): AuditRecord {
  // Fields unknown for a request refused early (no verified lease yet) stay undefined and
  // are left out of the canonical JSON. One object literal, not a spread of the base into
  // another (that copy was most of forward()'s own time, issue 14).
  const v = t.verified;
  return {
    v: 1,
    kind,
    time: auditTime(now),
    request_id: t.requestId,
    agent: v?.agent,
    lease_id: v?.leaseId,
    act: v?.claims.act?.sub,
    delegation: auditDelegation(v?.claims),
    task: v?.claims.nexus_task,
    service: t.service,
    method: t.method,
    path: t.path,
    intent: v?.intent,
    decision: t.decision?.decision ?? 'deny',
    rule_ids: t.decision === undefined ? [] : [...t.decision.ruleIds],
    policy_hash: t.policyHash,
    credential: t.credential,
    // An outcome record carries no signature: its request record has it.
    signature: kind === 'outcome' ? undefined : signatureOf(t),
    mcp: fields !== undefined && 'mcp' in fields ? fields.mcp : t.mcp?.audit(),
    upstream_status: fields?.upstream_status,
    bytes_in: fields?.bytes_in,
    bytes_out: fields?.bytes_out,
    duration_ms: fields?.duration_ms,
    redactions: fields?.redactions,
    error_code: fields?.error_code,
    error_detail: fields?.error_detail,
    approval: fields?.approval,
    websocket: fields?.websocket,
  } as AuditRecord;
}

/** Builds the request handler for the proxy listener's service routes. */
export function createPipeline(deps: PipelineDeps) {
  const { clock, logger } = deps;
  const verifyHeaders = createRequestVerifier({ ...deps, clock });
  const lap = (t: Trace, stage: PipelineStage) => {
    if (deps.observer === undefined && t.span === undefined) return;
    const seconds = t.laps.lap();
    t.span?.stage(stage, seconds);
    if (deps.observer !== undefined && t.service !== undefined)
      deps.observer.stage(t.service, stage, seconds);
  };

  async function reject(
    req: IncomingMessage,
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
    // A body refused for its size is read and thrown away (bounded) so the client sees the
    // 413; any other unread body closes the connection (nothing unauthenticated is read).
    const close =
      !bodyConsumed && !(nexusErr.code === 'body_too_large' && discardBody(req, deps.maxBodyBytes));
    t.code = nexusErr.code;
    const now = clock();
    try {
      await deps.audit.append(
        baseRecord(t, 'request', now, {
          error_code: nexusErr.code,
          error_detail: safeDetail(nexusErr),
          duration_ms: now - t.started,
          bytes_in: t.bytesIn,
        }),
        // A refused request's nonce stays spent on every worker too (never a replay refusal).
        t.claim === undefined ? undefined : { ...t.claim, exclusive: false },
      );
    } catch (auditErr) {
      logger.error({ request_id: t.requestId, err: errorSummary(auditErr) }, 'audit write failed');
      t.code = 'audit_unavailable';
      sendProblem(res, new NexusError('audit_unavailable'), t.requestId, close);
      return;
    }
    if (isLimitRefusal(nexusErr)) res.setHeader('retry-after', String(nexusErr.retryAfter));
    if (t.mcp?.refuse(res, nexusErr, t.requestId, close, bodyConsumed)) return;
    sendProblem(res, nexusErr, t.requestId, close);
  }

  /**
   * `upgrade`: the request asks for a WebSocket upgrade (the listener's `upgrade` event);
   * once every check passed it is handed to the relay instead of being forwarded.
   */
  return async function handle(
    req: IncomingMessage,
    res: ServerResponse,
    upgrade?: UpgradeRelay,
  ): Promise<void> {
    // The service runtime this request uses stays open until the request is done.
    const held: { release?: () => void; limits?: LimitRelease } = {};
    const t: Trace = {
      requestId: randomId(12),
      started: clock(),
      method: req.method ?? 'GET',
      bytesIn: 0,
      laps: new StageClock(),
      span: deps.tracing?.start(req.method ?? 'GET', req.headers),
    };
    try {
      await handleRequest(req, res, held, t, upgrade);
    } finally {
      held.release?.();
      held.limits?.(t.bytesOut ?? 0, t.cost);
      const summary: RequestSummary = {
        requestId: t.requestId,
        method: t.method,
        agent: t.verified?.agent,
        path: t.path,
        status: res.statusCode,
        bytesIn: t.bytesIn,
        bytesOut: t.bytesOut ?? 0,
        service: t.service,
        decision: t.decision?.decision ?? 'deny',
        code: t.code ?? 'ok',
        upstreamStatus: t.upstreamStatus,
        redactions: t.redactions ?? 0,
        seconds: t.laps.total(),
        ...(t.cost === undefined ? {} : { cost: t.cost }),
      };
      deps.observer?.finished(summary);
      t.span?.end(summary);
    }
  };

  async function handleRequest(
    req: IncomingMessage,
    res: ServerResponse,
    held: { release?: () => void; limits?: LimitRelease },
    t: Trace,
    upgrade?: UpgradeRelay,
  ): Promise<void> {
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
      if (service.kind === 'mcp') t.mcp = new McpExchange();
      const verified = await verifyHeaders(req);
      t.verified = verified;
      t.lease = req.headers['workload-identity-token'] as string | undefined;
      const agent = deps.authority.agent(verified.agent);
      if (agent === undefined) throw new NexusError('lease_invalid');
      if (agent.disabled) throw new NexusError('agent_disabled');
      // A sub-lease's delegated services and intent patterns (spec §12.5).
      checkDelegatedRequest(verified.claims, service.name, verified.intent);

      body = await readBody(req, deps.maxBodyBytes);
      bodyConsumed = true;
      t.bytesIn = body.length;
      await verifyRequestBody(verified, req.headers, body, serverDigest);
      await deps.replay.checkAndRecord(verified.leaseId, verified.nonce, verified.expires);
      t.claim = deps.replay.claim?.(verified.leaseId, verified.nonce, verified.expires);
      // Signed parts an upstream could read otherwise than policy and the mechanic did:
      // refused, never rewritten (the signature and digest cover them).
      checkQuery(route.query, service.mechanic.injectedQueryParams);
      checkBody(req.headers['content-type'], body);
      t.mcp?.inspect(req, route.rawPath, body);
      lap(t, 'verify');

      const policy = deps.policy();
      t.policyHash = policy.hash;
      const roles = rolesHeld(verified.claims.scope, agent.roles);
      // Limits come before policy (spec §8 step 10): requests policy denies count too, so
      // an agent probing the policy is throttled like any other.
      if (deps.limits?.active() === true) {
        try {
          held.limits = await deps.limits.admit({
            agent: verified.agent,
            roles,
            service: service.name,
            ...(service.credential === undefined ? {} : { credential: service.credential }),
            bytesIn: body.length,
          });
        } catch (err) {
          // A limit's refusal is a decision: audited as a denial that names the limit.
          if (isLimitRefusal(err))
            t.decision = { decision: 'deny', ruleIds: [`limit:${err.limit}`], reasons: [] };
          throw err;
        }
        lap(t, 'limits');
      }
      const input = { ...policyInput(verified, roles, service, t, route), mcp: t.mcp?.target };
      t.decision = policy.evaluate(input);
      lap(t, 'policy');
      t.mcp?.bindPolicy((mcp) => policy.evaluate({ ...input, mcp }).decision === 'allow');
      if (t.decision.decision !== 'allow') throw new NexusError('policy_denied');
      if (t.decision.approval !== undefined) {
        const refusal = await awaitApproval({
          queue: deps.approvals,
          approval: t.decision.approval,
          view: {
            request_id: t.requestId,
            agent: verified.agent,
            lease_id: verified.leaseId,
            ...(verified.claims.act?.sub === undefined ? {} : { act: verified.claims.act.sub }),
            service: service.name,
            method: t.method,
            path: route.path,
            intent: verified.intent,
          },
          record: (approval) => deps.audit.append(baseRecord(t, 'approval', clock(), { approval })),
          onClose: (abandon) => res.once('close', abandon),
          body: { bytes: body, contentType: req.headers['content-type'] },
          recheck: () => {
            if (deps.authority.isRevoked(verified.claims)) throw new NexusError('lease_revoked');
            if (deps.authority.agent(verified.agent)?.disabled !== false)
              throw new NexusError('agent_disabled');
          },
        });
        lap(t, 'approval');
        if (refusal !== undefined) {
          t.decision = { ...t.decision, decision: 'deny' };
          throw refusal;
        }
      }
    } catch (err) {
      await reject(req, res, t, err, bodyConsumed);
      return;
    }
    if (upgrade !== undefined) {
      await upgrade(upgradeExchange(req, res, t, service, route));
      return;
    }
    await forward(req, res, t, service, route, body);
  }

  /** What the WebSocket relay needs of this request: its context and its audit records. */
  function upgradeExchange(
    req: IncomingMessage,
    res: ServerResponse,
    t: Trace,
    service: ServiceRuntime,
    route: Route,
  ): UpgradeExchange {
    const verified = t.verified as VerifiedRequest;
    return {
      req,
      res,
      requestId: t.requestId,
      service,
      route,
      context: mechanicContext(t, service),
      minSecretLength: deps.minSecretLength,
      maxMessageBytes: deps.maxBodyBytes,
      logger,
      clock,
      deny: async (err) => {
        t.decision = { decision: 'deny', ruleIds: [err.rule], reasons: [] };
        await reject(req, res, t, err.error, true);
      },
      refuse: (err) => reject(req, res, t, err, true),
      recordRequest: async (credential) => {
        t.credential = credential ? { ...credential } : undefined;
        await deps.audit.append(baseRecord(t, 'request', clock(), { websocket: {} }), t.claim);
      },
      recordOutcome: (o) => {
        const now = clock();
        t.upstreamStatus = o.upstreamStatus;
        t.redactions = o.redactions;
        t.bytesOut = o.bytesOut;
        t.code = o.error?.code;
        deps.audit
          .append(
            baseRecord(t, 'outcome', now, {
              upstream_status: o.upstreamStatus,
              bytes_in: o.bytesIn,
              bytes_out: o.bytesOut,
              duration_ms: now - t.started,
              redactions: o.redactions,
              error_code: o.error?.code,
              error_detail: o.error === undefined ? undefined : safeDetail(o.error),
              websocket: o.websocket,
            }),
          )
          .catch((err: unknown) =>
            logger.error(
              { request_id: t.requestId, err: errorSummary(err) },
              'audit outcome write failed',
            ),
          );
      },
      // The lease, the agent and the policy in force, checked again while the stream is
      // open: a role taken away or a rule removed ends it as it would refuse a request.
      recheck: () => {
        if (deps.authority.isRevoked(verified.claims)) return new NexusError('lease_revoked');
        if (verified.claims.exp * 1000 <= clock()) return new NexusError('lease_expired');
        const agent = deps.authority.agent(verified.agent);
        if (agent === undefined || agent.disabled) return new NexusError('agent_disabled');
        const decision = deps
          .policy()
          .evaluate(
            policyInput(verified, rolesHeld(verified.claims.scope, agent.roles), service, t, route),
          );
        return decision.decision === 'allow' ? undefined : new NexusError('policy_denied');
      },
    };
  }

  /** The policy's view of a verified request (as the handshake and every recheck see it). */
  function policyInput(
    verified: VerifiedRequest,
    roles: string[],
    service: ServiceRuntime,
    t: Trace,
    route: Route,
  ) {
    return {
      agent: verified.agent,
      roles,
      act: verified.claims.act?.sub,
      delegation: auditDelegation(verified.claims),
      service: service.name,
      method: t.method,
      path: route.path,
      intent: verified.intent,
      now: clock(),
    };
  }

  function mechanicContext(t: Trace, service: ServiceRuntime): MechanicContext {
    const verified = t.verified as VerifiedRequest;
    return {
      service: service.name,
      agent: verified.agent,
      act: verified.claims.act?.sub,
      now: clock(),
      lease: t.lease,
      claims: verified.claims,
      credential: (name?: string) => {
        const credentialName = name ?? service.credential;
        if (credentialName === undefined) {
          throw new NexusError('credential_unavailable', undefined, {
            detail: `service "${service.name}" has no credential configured`,
          });
        }
        return deps.vault.resolve(credentialName);
      },
    };
  }

  async function forward(
    req: IncomingMessage,
    res: ServerResponse,
    t: Trace,
    service: ServiceRuntime,
    route: Route,
    body: Buffer,
  ): Promise<void> {
    const ctx = mechanicContext(t, service);
    const basePath = service.upstream.pathname.replace(/\/$/, '');
    const target = t.mcp?.upstreamPath(basePath) ?? (`${basePath}${route.rawPath}` || '/');
    let status = 0;
    let bytesOut = 0;
    let redactions = 0;
    let errorCode: string | undefined;
    let errorDetail: string | undefined;
    let secrets: readonly string[] = [];
    let audited = false;
    let upstream: Dispatcher.ResponseData | undefined;
    let piped = false;
    let cost: CostReader | undefined;
    try {
      for (let attempt = 0; attempt < 2; attempt++) {
        const out: OutboundRequest = {
          method: t.method,
          url: new URL(
            `${service.upstream.origin}${target}${route.query ? `?${route.query}` : ''}`,
          ),
          headers: forwardableRawHeaders(req.rawHeaders, service.mechanic.injectedHeaders),
          body: body.length > 0 ? body : undefined,
        };
        t.mcp?.prepare(out.headers);
        // Nexus's own trace context, never the agent's (telemetry/tracing.ts).
        t.span?.propagate(out.headers);
        // No agent parameter can be read as one the mechanic injects: such a request was
        // refused before (checkQuery), so the query goes on byte for byte.
        let applied: AppliedAuth;
        try {
          applied = await service.mechanic.apply(out, ctx);
        } catch (err) {
          if (attempt > 0) throw err;
          // Nothing was sent: this request ends here with a single request record.
          await reject(req, res, t, err, true);
          return;
        }
        t.credential = applied.credential ? { ...applied.credential } : undefined;
        secrets = applied.secrets;
        if (attempt === 0) {
          lap(t, 'inject');
          // Allowed and built. The request record (with the credential name and version)
          // MUST be durable before any byte is forwarded.
          try {
            await deps.audit.append(baseRecord(t, 'request', clock()), t.claim);
          } catch (err) {
            if (isNexusError(err) && err.code === 'replay_detected') {
              // Another worker forwarded this signed request first (the claim met its
              // record in the audit transaction): refused, nothing forwarded.
              t.claim = undefined;
              await reject(req, res, t, err, true);
              return;
            }
            logger.error({ request_id: t.requestId, err: errorSummary(err) }, 'audit write failed');
            t.code = 'audit_unavailable';
            sendProblem(res, new NexusError('audit_unavailable'), t.requestId, false);
            return;
          }
          audited = true;
          lap(t, 'audit');
        }
        try {
          upstream = await (out.dispatcher ?? service.dispatcher).request({
            origin: service.upstream.origin,
            path: out.url.pathname + out.url.search,
            method: out.method as Dispatcher.HttpMethod,
            headers: out.headers,
            // The verified bytes themselves: a view, never a copy (issue 14 step 5).
            body: out.body === undefined ? undefined : asBuffer(out.body),
            headersTimeout: service.headersTimeoutMs,
            bodyTimeout: service.bodyTimeoutMs,
          });
        } catch (err) {
          throw upstreamFailure(err, 'request');
        }
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
      lap(t, 'upstream');
      status = upstream.statusCode;
      // llhttp takes any three digits; a final status outside RFC 9110's 100-599 (or a 1xx
      // that undici handed over as final) is not an answer an HTTP client can act on.
      if (status < 200 || status > 599) {
        throw new NexusError('upstream_invalid', undefined, {
          detail: `the upstream answered with status ${status}, not a final HTTP status (200-599)`,
        });
      }
      let scrubber: ReturnType<typeof createResponseScrubber>;
      try {
        scrubber = createResponseScrubber({
          headers: upstream.headers,
          secrets,
          origin: service.upstream.origin,
          removeHeaders: service.removeHeaders,
          minSecretLength: deps.minSecretLength,
        });
      } catch (err) {
        throw upstreamFailure(err, 'headers');
      }
      redactions += scrubber.headerRedactions;
      const ct = upstream.headers['content-type'];
      const source =
        t.mcp?.body(upstream.body, Array.isArray(ct) ? ct[0] : ct, scrubber.coded) ?? upstream.body;
      // The first error of the upstream body tells who ended the relay: the upstream (its
      // socket, its framing, an undecodable body) or the agent (a premature close).
      let bodyError: unknown;
      upstream.body.once('error', (e: unknown) => (bodyError ??= e));
      // Signed as relayed from the upstream for this request (spec §10.4): one signature;
      // no byte of the head before it exists (it throws: fails closed).
      signRelayedHeaders(
        req,
        status,
        scrubber.headers,
        t.requestId,
        (t.verified as VerifiedRequest).nonce,
      );
      try {
        res.writeHead(status, scrubber.headers);
      } catch (err) {
        // Node refuses a field name or value it would not put on the wire: nothing is sent.
        throw upstreamFailure(err, 'headers');
      }
      // A streamed response (no upstream Content-Length: SSE, chunked) gets its headers at
      // once; a sized one sends them with its first body bytes, in one write instead of two.
      if (upstream.headers['content-length'] === undefined) res.flushHeaders();
      piped = true;
      // Read from the body as relayed: decoded (scrub/body.ts) and scrubbed.
      cost =
        service.cost === undefined
          ? undefined
          : createCostReader(service.cost, Array.isArray(ct) ? ct[0] : ct);
      if (scrubber.coded) {
        const scrub = scrubber.stream();
        const counter = new Transform({
          transform(chunk: Buffer, _enc, cb) {
            bytesOut += chunk.length;
            cost?.push(chunk);
            cb(null, chunk);
          },
        });
        try {
          await pipeline(source, scrub, counter, res);
        } catch (err) {
          throw upstreamFailure(bodyError ?? err, 'body');
        } finally {
          redactions += scrub.redactions;
        }
      } else {
        const redactor = scrubber.redactor();
        const reader = cost;
        try {
          await relayRedacted(
            source,
            redactor,
            res,
            reader === undefined
              ? (n) => (bytesOut += n)
              : (n, chunk) => {
                  bytesOut += n;
                  reader.push(chunk);
                },
          );
        } catch (err) {
          throw upstreamFailure(bodyError ?? err, 'body');
        } finally {
          redactions += redactor.count;
        }
      }
    } catch (err) {
      // An upstream body we never read would hold its pooled connection open.
      if (upstream !== undefined && !piped) {
        upstream.body.on('error', () => undefined).destroy();
      }
      const failure = isNexusError(err)
        ? err
        : new NexusError('internal_error', undefined, { cause: err });
      errorCode = failure.code;
      errorDetail = safeDetail(failure);
      t.code = failure.code;
      if (!res.headersSent) {
        if (!t.mcp?.refuse(res, failure, t.requestId, false, true))
          sendProblem(res, failure, t.requestId, false);
      } else {
        // Headers are gone: the only honest signal left is an aborted response.
        res.destroy();
      }
      if (failure.code === 'internal_error') {
        logger.error(
          { request_id: t.requestId, err: errorSummary(failure.cause ?? err) },
          'forwarding failed',
        );
      }
    } finally {
      if (piped) lap(t, 'relay');
      t.cost = cost?.end();
      t.upstreamStatus = status || undefined;
      t.redactions = redactions;
      t.bytesOut = bytesOut;
      const now = clock();
      if (audited)
        deps.audit
          .append(
            baseRecord(t, 'outcome', now, {
              upstream_status: status || undefined,
              bytes_in: t.bytesIn,
              bytes_out: bytesOut,
              duration_ms: now - t.started,
              redactions,
              error_code: errorCode,
              error_detail: errorDetail,
              mcp: t.mcp?.outcome(),
            }),
          )
          .catch((err: unknown) =>
            logger.error(
              { request_id: t.requestId, err: errorSummary(err) },
              'audit outcome write failed',
            ),
          );
    }
  }
}

const TLS_CERT_CODES: ReadonlySet<string> = new Set([
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'HOSTNAME_MISMATCH',
]);

const failure = (
  code: 'upstream_unreachable' | 'upstream_invalid' | 'upstream_timeout',
  detail: string,
  cause: unknown,
) => new NexusError(code, undefined, { detail, cause });

/**
 * Maps a forwarding failure to a stable code and a safe detail the operator can act on
 * (DNS vs refused vs TLS, a malformed answer...), never the error's message (it can hold
 * URLs and upstream bytes). `phase`: sending the request and reading the response head,
 * writing the head to the agent, or relaying the body. A NexusError passes unchanged; an
 * unknown error is `internal_error`.
 */
export function upstreamFailure(err: unknown, phase: 'request' | 'headers' | 'body'): NexusError {
  if (isNexusError(err)) {
    // The scrubber's refusals (scrub/body.ts) carry no detail of their own.
    if (err.code !== 'upstream_invalid' || err.detail !== undefined) return err;
    return failure(
      'upstream_invalid',
      phase === 'body'
        ? "the upstream's response body cannot be decoded for scrubbing (corrupt, or too large once decoded)"
        : "the upstream's Content-Encoding cannot be decoded for scrubbing (Nexus decodes gzip, deflate and br, one coding)",
      err,
    );
  }
  const e = (err ?? {}) as { code?: unknown; name?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  const name = typeof e.name === 'string' ? e.name : '';
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return failure('upstream_timeout', 'connecting to the upstream timed out', err);
    case 'UND_ERR_HEADERS_TIMEOUT':
      return failure('upstream_timeout', 'the upstream did not answer in time', err);
    case 'UND_ERR_BODY_TIMEOUT':
      return failure('upstream_timeout', "the upstream's response body stalled", err);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_NONAME':
    case 'EAI_FAIL':
      return failure('upstream_unreachable', "the upstream's host name did not resolve (DNS)", err);
    case 'ECONNREFUSED':
      return failure('upstream_unreachable', 'the upstream refused the connection', err);
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EHOSTDOWN':
    case 'ENETDOWN':
      return failure('upstream_unreachable', "no network route to the upstream's host", err);
    case 'ERR_STREAM_PREMATURE_CLOSE':
      // While relaying, the response stream closed under us: the agent went away.
      if (phase === 'body') {
        return new NexusError('agent_disconnected', undefined, {
          detail: 'the agent closed its connection before the response was complete',
          cause: err,
        });
      }
      return failure(
        'upstream_unreachable',
        'the upstream closed the connection without an answer',
        err,
      );
    case 'ECONNRESET':
    case 'EPIPE':
    case 'UND_ERR_SOCKET':
    case 'UND_ERR_CLOSED':
    case 'UND_ERR_DESTROYED':
      return failure(
        'upstream_unreachable',
        phase === 'body'
          ? 'the connection to the upstream closed before its response was complete'
          : 'the upstream closed the connection without an answer',
        err,
      );
    case 'EPROTO':
      return failure('upstream_unreachable', 'TLS handshake with the upstream failed', err);
    // A malformed answer: the response framing or head is not HTTP we can relay.
    case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH':
      return failure(
        'upstream_invalid',
        'the upstream sent a response whose length does not match its framing (Content-Length)',
        err,
      );
    case 'UND_ERR_HEADERS_OVERFLOW':
      return failure(
        'upstream_invalid',
        "the upstream's response header section is too large",
        err,
      );
    case 'UND_ERR_RES_EXCEEDED_MAX_SIZE':
      return failure('upstream_invalid', "the upstream's response is too large", err);
    case 'UND_ERR_INFO':
      return failure('upstream_invalid', 'the upstream sent an invalid interim response', err);
    case 'ERR_INVALID_CHAR':
    case 'ERR_INVALID_HTTP_TOKEN':
    case 'ERR_HTTP_INVALID_HEADER_VALUE':
    case 'ERR_HTTP_INVALID_STATUS_CODE':
      if (phase === 'headers')
        return failure('upstream_invalid', "the upstream's response head cannot be relayed", err);
      break;
    default:
      break;
  }
  if (TLS_CERT_CODES.has(code)) {
    // An OpenSSL verification code is a fixed vocabulary, not upstream input.
    return failure(
      'upstream_unreachable',
      `TLS: the upstream's certificate was not accepted (${code})`,
      err,
    );
  }
  if (/^ERR_(SSL|TLS)_/.test(code)) {
    return failure('upstream_unreachable', 'TLS handshake with the upstream failed', err);
  }
  // undici's HTTP parser (llhttp) error: garbage, a bad status line, conflicting framing,
  // an invalid header or chunk. Its code (HPE_*) is set only for some of them.
  if (name === 'HTTPParserError' || code.startsWith('HPE_')) {
    return failure(
      'upstream_invalid',
      phase === 'body'
        ? "the upstream's response body is not valid HTTP framing"
        : "the upstream's response is not valid HTTP/1.1",
      err,
    );
  }
  // undici asserts on some protocol violations (a 101 to a request that did not ask for
  // an upgrade): the upstream's doing, not ours, when it happens on the upstream request.
  if (code === 'ERR_ASSERTION' && phase === 'request') {
    return failure('upstream_invalid', "the upstream's answer broke the HTTP/1.1 protocol", err);
  }
  return new NexusError('internal_error', undefined, { cause: err });
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
