/**
 * The operator REST API (`/v1/...`), on its own listener, separate from the proxy.
 *
 * MUST: every endpoint but `/v1/health`, `/v1/openapi.json`, the OAuth callback
 * `/v1/connections/callback` (authorised by its one-time `state`, see `connections.ts`) and
 * the client ID metadata documents `/v1/mcp/clients/{service}` (no secret, `mcp-clients.ts`)
 * requires an operator token (`Authorization: Bearer nxo_...`), looked up by its SHA-256 hash. A lease or anything
 * else in that header is refused with `unauthorized`. `/metrics` has its own access rule
 * (`admin.metrics`, see `metrics/http.ts`): a scrape token or an operator token by default. MUST: no endpoint returns a
 * credential value: the vault is write-only here.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import { NexusError, isNexusError } from '@nexus-proxy/protocol';
import type { Authority } from '../authority/authority.js';
import type { Store, AuditRow } from '../store/store.js';
import { randomId, sha256Hex } from '../util/ids.js';
import type { Logger } from '../util/logger.js';
import { errorSummary } from '../proxy/pipeline.js';
import { sendProblem } from '../proxy/problem.js';
import { discardBody, readBody } from '../proxy/read-body.js';
import { OPENAPI_DOCUMENT } from './openapi.js';
import { connectionRoutes, type ConnectionRegistry } from './connections.js';
import { mcpClientRoutes } from './mcp-clients.js';
import { approvalRoutes, type OperatorIdentity } from './approvals.js';
import type { ApprovalBoard } from '../approvals/board.js';
import type { ChainRecord } from '../audit/chain.js';
import { approverNameOf, checkRole, type Caller, type PersonTokenTable } from './callers.js';
import { actionRecord } from './action-audit.js';
import { serviceRoutes, type AddServiceInput } from './services.js';
import {
  createMetricsEndpoint,
  METRICS_PATH,
  type MetricsEndpointOptions,
} from '../metrics/http.js';

export interface AdminVault {
  set(
    name: string,
    fields: Record<string, string>,
  ): Promise<{ name: string; version: number; fieldNames: string[] }>;
  rotate(
    name: string,
    fields: Record<string, string>,
  ): Promise<{ name: string; version: number; fieldNames: string[] }>;
  delete(name: string): Promise<void>;
  list(): Promise<
    { name: string; version: number; fieldNames: string[]; createdAt: number; updatedAt: number }[]
  >;
}

export interface AdminDeps {
  readonly store: Store;
  readonly authority: Authority;
  readonly vault: AdminVault;
  readonly services: () => {
    name: string;
    kind?: string;
    upstream: string;
    auth_type: string;
    credential?: string;
  }[];
  readonly explain: (input: {
    agent: string;
    service: string;
    method: string;
    path: string;
    intent: string;
    act?: string;
    delegation?: string[];
    roles?: string[];
    now: number;
  }) => unknown;
  readonly policyHash: () => string;
  readonly auditVerify: () => Promise<unknown>;
  readonly rotateMasterKey: () => Promise<{ version: number }>;
  readonly rotateSigningKey: () => Promise<{ kid: string }>;
  /** Re-reads nexus.yaml and swaps services, agents and policies in. */
  readonly reload?: () => Promise<unknown>;
  readonly clock: () => number;
  readonly logger: Logger;
  readonly maxBodyBytes?: number;
  /** OAuth connection managers by service (`admin/connections.ts`). */
  readonly connections?: ConnectionRegistry;
  /** `GET /metrics` (metrics/http.ts); absent when `admin.metrics.enabled` is false. */
  readonly metrics?: Omit<MetricsEndpointOptions, 'isOperator'>;
  /** `GET /v1/status` (app/status.ts). */
  readonly status?: () => Promise<unknown>;
  /**
   * Requests held for approval (`/v1/approvals`): every worker's under `--workers`, every
   * node's in a PostgreSQL cluster.
   */
  readonly approvals?: ApprovalBoard;
  /**
   * `POST /v1/approvals/{id}/webhook`: a webhook approver's signed decision
   * (approvals/webhook.ts). Authenticated by its HMAC signature, not an operator token.
   */
  readonly approvalWebhook?: (
    req: IncomingMessage,
    res: ServerResponse,
    id: string,
  ) => Promise<void>;
  /** `POST /v1/services`: adds a service from a preset to nexus.yaml and reloads. */
  readonly addService?: (input: AddServiceInput) => Promise<unknown>;
  /** `GET /v1/limits`: configured limits and live counters (limits/view.ts). */
  readonly limits?: () => Promise<unknown>;
  /**
   * Person tokens the console mints at OIDC login (admin/callers.ts): this process's, or
   * the primary's under `nexus up --workers N` (app/worker-sessions.ts).
   */
  readonly people?: PersonTokenTable;
  /** Appends an admin action's audit record (durable when it resolves). */
  readonly audit?: { append(record: ChainRecord): Promise<unknown> };
}

type Handler = (ctx: {
  params: Record<string, string>;
  query: URLSearchParams;
  body: unknown;
  res: ServerResponse;
  /** The operator token's identity (undefined on public routes). */
  operator: OperatorIdentity | undefined;
}) => Promise<unknown>;

interface RouteDef {
  method: string;
  pattern: RegExp;
  keys: string[];
  handler: Handler;
  public?: boolean;
}

function route(method: string, path: string, handler: Handler, isPublic = false): RouteDef {
  const keys: string[] = [];
  const pattern = new RegExp(
    '^' +
      path.replace(/\{(\w+)\}/g, (_m, k: string) => {
        keys.push(k);
        return '([^/]+)';
      }) +
      '$',
  );
  return { method, pattern, keys, handler, public: isPublic };
}

const agentBody = z.strictObject({
  name: z.string().min(1).max(63),
  roles: z
    .array(z.string().regex(/^[A-Za-z0-9._:-]{1,64}$/))
    .max(64)
    .default([]),
});
const enrollBody = z.strictObject({
  ttl_seconds: z
    .number()
    .int()
    .min(1)
    .max(7 * 86400)
    .optional(),
  act: z.string().min(1).max(256).optional(),
  task: z.string().min(1).max(256).optional(),
});
const credentialBody = z.strictObject({
  fields: z.record(
    z.string().regex(/^[A-Za-z_][A-Za-z0-9_-]{0,63}$/),
    z.string().min(1).max(65536),
  ),
});
const explainBody = z.strictObject({
  agent: z.string().min(1),
  service: z.string().min(1),
  method: z.string().min(1).max(16),
  path: z.string().min(1).max(4096),
  intent: z.string().max(512).default(''),
  act: z.string().optional(),
  delegation: z.array(z.string().max(64)).max(8).optional(),
  roles: z.array(z.string()).optional(),
  at: z.string().datetime().optional(),
});

function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body ?? {});
  if (!r.success) {
    const where = r.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`);
    throw new NexusError('validation_failed', where.join('; ').slice(0, 500));
  }
  return r.data;
}

function iso(ms: number | undefined): string | undefined {
  return ms === undefined ? undefined : new Date(ms).toISOString();
}

function auditView(row: AuditRow): Record<string, unknown> {
  return {
    seq: row.seq,
    hash: row.hash,
    // A cluster store keeps one chain per node: seq is a position in that chain.
    ...(row.chain === undefined ? {} : { chain: row.chain }),
    ...(JSON.parse(row.record) as Record<string, unknown>),
  };
}

/** Builds the admin request handler. */
export function createAdminHandler(deps: AdminDeps) {
  const { authority, store, vault, clock } = deps;

  const agentView = (name: string) => {
    const a = authority.agent(name);
    if (a === undefined) throw new NexusError('not_found', 'no such agent');
    return {
      name: a.name,
      roles: a.roles,
      disabled: a.disabled,
      source: a.source,
      created_at: iso(a.createdAt),
    };
  };

  const routes: RouteDef[] = [
    route('GET', '/v1/health', async () => ({ status: 'ok' }), true),
    route('GET', '/v1/openapi.json', async () => OPENAPI_DOCUMENT, true),
    route('GET', '/v1/status', async () => {
      if (deps.status === undefined) throw new NexusError('not_found');
      return deps.status();
    }),

    route('GET', '/v1/agents', async () => ({
      agents: authority.listAgents().map((a) => agentView(a.name)),
    })),
    route('POST', '/v1/agents', async ({ body, res }) => {
      const b = parseBody(agentBody, body);
      await authority.createAgent(b.name, b.roles);
      res.statusCode = 201;
      return agentView(b.name);
    }),
    route('GET', '/v1/agents/{name}', async ({ params }) => agentView(params.name as string)),
    route('POST', '/v1/agents/{name}/disable', async ({ params }) => {
      await authority.setAgentDisabled(params.name as string, true);
      return agentView(params.name as string);
    }),
    route('POST', '/v1/agents/{name}/enable', async ({ params }) => {
      await authority.setAgentDisabled(params.name as string, false);
      return agentView(params.name as string);
    }),
    route('POST', '/v1/agents/{name}/enrollment-tokens', async ({ params, body, res }) => {
      const b = parseBody(enrollBody, body);
      const r = await authority.createEnrollmentToken(params.name as string, {
        ttlMs: b.ttl_seconds === undefined ? undefined : b.ttl_seconds * 1000,
        act: b.act,
        task: b.task,
      });
      res.statusCode = 201;
      // The only response that ever carries an enrollment token: shown once, stored hashed.
      return { agent: r.agent, id: r.id, enrollment_token: r.token, expires_at: iso(r.expiresAt) };
    }),
    route('POST', '/v1/agents/{name}/revoke-leases', async ({ params }) => {
      await authority.revokeAgent(params.name as string);
      return { revoked: 'agent', agent: params.name };
    }),

    route('GET', '/v1/leases', async ({ query }) => {
      const rows = await authority.listLeases({
        agent: query.get('agent') ?? undefined,
        active: query.get('all') === 'true' ? false : true,
        limit: query.has('limit') ? Number(query.get('limit')) : undefined,
      });
      return {
        leases: rows.map((r) => ({
          id: r.jti,
          agent: r.agent,
          issued_at: iso(r.issuedAt),
          expires_at: iso(r.expiresAt),
          act: r.act,
          task: r.task,
          key_thumbprint: r.jkt,
          revoked: r.revoked,
        })),
      };
    }),
    route('POST', '/v1/leases/revoke-all', async () => {
      await authority.revokeAll();
      return { revoked: 'all' };
    }),
    route('POST', '/v1/leases/{id}/revoke', async ({ params }) => {
      await authority.revokeLease(params.id as string);
      return { revoked: 'lease', id: params.id };
    }),

    route('GET', '/v1/credentials', async () => ({
      credentials: (await vault.list()).map((c) => ({
        name: c.name,
        version: c.version,
        fields: c.fieldNames,
        created_at: iso(c.createdAt),
        updated_at: iso(c.updatedAt),
      })),
    })),
    route('PUT', '/v1/credentials/{name}', async ({ params, body }) => {
      const b = parseBody(credentialBody, body);
      const r = await vault.set(params.name as string, b.fields);
      return { name: r.name, version: r.version, fields: r.fieldNames };
    }),
    route('POST', '/v1/credentials/{name}/rotate', async ({ params, body }) => {
      const b = parseBody(credentialBody, body);
      // The vault's rotate refuses a credential that is not set (not_found).
      const r = await vault.rotate(params.name as string, b.fields);
      return { name: r.name, version: r.version, fields: r.fieldNames };
    }),
    route('DELETE', '/v1/credentials/{name}', async ({ params, res }) => {
      await vault.delete(params.name as string);
      res.statusCode = 204;
      return undefined;
    }),
    route('POST', '/v1/vault/rotate-master-key', async () => deps.rotateMasterKey()),
    route('POST', '/v1/authority/rotate-key', async () => deps.rotateSigningKey()),

    route('GET', '/v1/services', async () => ({ services: deps.services() })),
    route('GET', '/v1/limits', async () => {
      if (deps.limits === undefined) throw new NexusError('not_found');
      return deps.limits();
    }),
    route('POST', '/v1/config/reload', async () => {
      if (deps.reload === undefined) throw new NexusError('method_not_allowed');
      return deps.reload();
    }),
    route('POST', '/v1/policy/explain', async ({ body }) => {
      const b = parseBody(explainBody, body);
      return deps.explain({
        agent: b.agent,
        service: b.service,
        method: b.method.toUpperCase(),
        path: b.path,
        intent: b.intent,
        act: b.act,
        delegation: b.delegation,
        roles: b.roles,
        now: b.at === undefined ? clock() : Date.parse(b.at),
      });
    }),

    route('GET', '/v1/audit', async ({ query }) => {
      const num = (k: string) => (query.has(k) ? Number(query.get(k)) : undefined);
      const time = (k: string) => (query.has(k) ? Date.parse(query.get(k) as string) : undefined);
      const rows = await store.queryAudit({
        agent: query.get('agent') ?? undefined,
        service: query.get('service') ?? undefined,
        decision: query.get('decision') ?? undefined,
        requestId: query.get('request_id') ?? undefined,
        kind: query.get('kind') ?? undefined,
        since: time('since'),
        until: time('until'),
        limit: num('limit'),
        order: query.get('order') === 'asc' ? 'asc' : 'desc',
      });
      return { records: rows.map(auditView) };
    }),
    route('GET', '/v1/audit/export', async ({ query, res }) => {
      // JSON Lines, ascending, paged from `from_seq` (default 1).
      let from = Number(query.get('from_seq') ?? '1');
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      for (;;) {
        const rows = await store.readAudit({ fromSeq: from, limit: 1000 });
        for (const row of rows) {
          res.write(
            JSON.stringify({
              seq: row.seq,
              prev_hash: row.prevHash,
              hash: row.hash,
              record: JSON.parse(row.record),
            }) + '\n',
          );
        }
        if (rows.length < 1000) break;
        from = (rows[rows.length - 1] as AuditRow).seq + 1;
      }
      res.end();
      return undefined;
    }),
    route('GET', '/v1/audit/verify', async () => deps.auditVerify()),
    route('GET', '/v1/audit/checkpoints', async () => ({
      checkpoints: await store.listCheckpoints(),
    })),
    ...connectionRoutes(deps.connections ?? new Map()).map((r) =>
      route(r.method, r.path, r.handler, r.public),
    ),
    ...mcpClientRoutes({
      connections: deps.connections ?? new Map(),
      services: deps.services,
      vault: deps.vault,
    }).map((r) => route(r.method, r.path, r.handler, r.public)),
    ...serviceRoutes(deps.addService).map((r) => route(r.method, r.path, r.handler)),
    ...approvalRoutes(deps.approvals).map((r) => route(r.method, r.path, r.handler)),
  ];

  async function authenticate(req: IncomingMessage): Promise<Caller> {
    const header = req.headers.authorization;
    const m =
      header === undefined ? null : /^Bearer ((nxo|nxp)_[A-Za-z0-9_-]{20,100})$/.exec(header);
    if (m === null) throw new NexusError('unauthorized');
    if (m[2] === 'nxp') {
      const person = await deps.people?.find(m[1] as string);
      if (person === undefined) throw new NexusError('unauthorized');
      return {
        type: 'person',
        id: person.sub,
        name: person.name,
        role: person.role,
        issuer: person.issuer,
        ...(person.email === undefined ? {} : { email: person.email }),
      };
    }
    const row = await store.findOperatorTokenByHash(sha256Hex(m[1] as string));
    if (row === undefined) throw new NexusError('unauthorized');
    // An operator token is the admin role.
    return { type: 'operator_token', id: row.id, name: row.name, role: 'admin' };
  }

  const metricsEndpoint =
    deps.metrics === undefined
      ? undefined
      : createMetricsEndpoint({
          ...deps.metrics,
          isOperator: (req) =>
            authenticate(req).then(
              () => true,
              () => false,
            ),
        });

  async function readJson(req: IncomingMessage): Promise<unknown> {
    const body = await readBody(req, deps.maxBodyBytes ?? 1024 * 1024);
    if (body.length === 0) return undefined;
    try {
      return JSON.parse(body.toString('utf8'));
    } catch {
      throw new NexusError('validation_failed', 'body is not JSON');
    }
  }

  return async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = randomId(12);
    res.setHeader('nexus-request-id', requestId);
    try {
      const url = new URL(req.url ?? '/', 'http://admin.invalid');
      if (url.pathname === METRICS_PATH && metricsEndpoint !== undefined) {
        await metricsEndpoint(req, res, requestId);
        return;
      }
      const callback = /^\/v1\/approvals\/(apr_[A-Za-z0-9_-]{1,64})\/webhook$/.exec(url.pathname);
      if (callback !== null && deps.approvalWebhook !== undefined) {
        if (req.method !== 'POST') throw new NexusError('method_not_allowed');
        await deps.approvalWebhook(req, res, callback[1] as string);
        return;
      }
      const candidates = routes.filter((r) => r.pattern.test(url.pathname));
      if (candidates.length === 0) throw new NexusError('not_found');
      const match = candidates.find((r) => r.method === req.method);
      if (match === undefined) throw new NexusError('method_not_allowed');
      const caller = match.public ? undefined : await authenticate(req);
      const method = req.method ?? 'GET';
      const action = caller === undefined ? undefined : checkRole(caller, method, url.pathname);
      // A person's approvals name them (with `person:` before their sub as the id).
      const operator: OperatorIdentity | undefined =
        caller === undefined
          ? undefined
          : {
              id: caller.type === 'person' ? `person:${caller.id}` : caller.id,
              name: caller.name,
              approverName: approverNameOf(caller),
            };
      const values = match.pattern.exec(url.pathname)?.slice(1) ?? [];
      const params: Record<string, string> = {};
      match.keys.forEach((k, i) => {
        try {
          params[k] = decodeURIComponent(values[i] ?? '');
        } catch {
          throw new NexusError('validation_failed', 'malformed percent-encoding in the path');
        }
      });
      const body =
        req.method === 'GET' || req.method === 'DELETE' ? undefined : await readJson(req);
      if (action !== undefined && caller !== undefined && deps.audit !== undefined) {
        // Durable before the action runs: no action without its record.
        await deps.audit.append(
          actionRecord({
            action,
            caller,
            requestId,
            method,
            path: url.pathname,
            params,
            policyHash: deps.policyHash(),
            now: clock(),
          }),
        );
      }
      const result = await match.handler({ params, query: url.searchParams, body, res, operator });
      if (res.writableEnded || res.headersSent) return;
      if (result === undefined) {
        res.end();
        return;
      }
      const text = JSON.stringify(result);
      res.writeHead(res.statusCode || 200, {
        'content-type': 'application/json',
        'cache-control': 'no-store',
        'content-length': Buffer.byteLength(text),
      });
      res.end(text);
    } catch (err) {
      const e = isNexusError(err)
        ? err
        : new NexusError('internal_error', undefined, { cause: err });
      // Server-side failures are logged with their cause (e.g. store_busy <- SQLITE_BUSY).
      if (!isNexusError(err) || e.status >= 500)
        deps.logger.error({ request_id: requestId, err: errorSummary(err) }, 'admin error');
      // An oversized body is discarded (bounded) so the client reads the 413, or the
      // connection is closed with the answer.
      const close =
        e.code === 'body_too_large' && !discardBody(req, deps.maxBodyBytes ?? 1024 * 1024);
      sendProblem(res, e, requestId, close);
    }
  };
}

/** Creates an operator token: returns the plaintext once; only its hash is stored. */
export async function createOperatorToken(
  store: Store,
  name: string,
  now: number,
): Promise<{ id: string; token: string }> {
  const token = `nxo_${randomId(32)}`;
  const id = randomId(9);
  await store.insertOperatorToken({ id, name, tokenHash: sha256Hex(token), createdAt: now });
  return { id, token };
}
