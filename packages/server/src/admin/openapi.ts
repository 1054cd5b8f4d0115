/**
 * The OpenAPI 3.1 description of the admin API, served at `GET /v1/openapi.json`.
 * Kept beside the router; `admin.test.ts` checks every route here exists there.
 */
const problem = { $ref: '#/components/responses/Problem' };
const ok = (description: string, schema: Record<string, unknown> = { type: 'object' }) => ({
  description,
  content: { 'application/json': { schema } },
});
const op = (summary: string, extra: Record<string, unknown> = {}) => ({
  summary,
  responses: { '200': ok(summary), default: problem },
  ...extra,
});
const nameParam = (name: string) => ({
  name,
  in: 'path',
  required: true,
  schema: { type: 'string' },
});
const jsonBody = (schema: Record<string, unknown>) => ({
  required: true,
  content: { 'application/json': { schema } },
});

export const OPENAPI_DOCUMENT = {
  openapi: '3.1.0',
  info: {
    title: 'Nexus admin API',
    version: '1',
    description:
      'Operator API of a Nexus node. Every operation except health and this document needs `Authorization: Bearer <operator token>`. Errors are RFC 9457 problem details with a stable `code`. No operation ever returns a credential value.',
  },
  security: [{ operatorToken: [] }],
  components: {
    securitySchemes: { operatorToken: { type: 'http', scheme: 'bearer' } },
    responses: {
      Problem: {
        description: 'RFC 9457 problem details',
        content: {
          'application/problem+json': {
            schema: {
              type: 'object',
              required: ['type', 'title', 'status', 'code', 'request_id'],
              properties: {
                type: { type: 'string' },
                title: { type: 'string' },
                status: { type: 'integer' },
                code: { type: 'string' },
                detail: { type: 'string' },
                request_id: { type: 'string' },
              },
            },
          },
        },
      },
    },
  },
  paths: {
    '/v1/health': { get: op('Liveness', { security: [] }) },
    '/v1/openapi.json': { get: op('This document', { security: [] }) },
    '/v1/agents': {
      get: op('List agents'),
      post: op('Create an agent', {
        requestBody: jsonBody({
          type: 'object',
          required: ['name'],
          properties: {
            name: { type: 'string' },
            roles: { type: 'array', items: { type: 'string' } },
          },
        }),
      }),
    },
    '/v1/agents/{name}': { get: op('Show an agent', { parameters: [nameParam('name')] }) },
    '/v1/agents/{name}/disable': {
      post: op('Disable an agent and revoke its leases', { parameters: [nameParam('name')] }),
    },
    '/v1/agents/{name}/enable': {
      post: op('Enable an agent', { parameters: [nameParam('name')] }),
    },
    '/v1/agents/{name}/enrollment-tokens': {
      post: op('Create a one-time enrollment token (shown once)', {
        parameters: [nameParam('name')],
        requestBody: jsonBody({
          type: 'object',
          properties: {
            ttl_seconds: { type: 'integer' },
            act: { type: 'string' },
            task: { type: 'string' },
          },
        }),
      }),
    },
    '/v1/agents/{name}/revoke-leases': {
      post: op('Revoke every lease of an agent', { parameters: [nameParam('name')] }),
    },
    '/v1/leases': {
      get: op('List leases', {
        parameters: [
          { name: 'agent', in: 'query', schema: { type: 'string' } },
          { name: 'all', in: 'query', schema: { type: 'boolean' } },
          { name: 'limit', in: 'query', schema: { type: 'integer' } },
        ],
      }),
    },
    '/v1/leases/{id}/revoke': { post: op('Revoke one lease', { parameters: [nameParam('id')] }) },
    '/v1/leases/revoke-all': { post: op('Revoke every lease (kill switch)') },
    '/v1/credentials': { get: op('List credential metadata (names, versions, field names)') },
    '/v1/credentials/{name}': {
      put: op('Set a credential (creates a new version)', {
        parameters: [nameParam('name')],
        requestBody: jsonBody({
          type: 'object',
          required: ['fields'],
          properties: { fields: { type: 'object', additionalProperties: { type: 'string' } } },
        }),
      }),
      delete: op('Delete a credential', { parameters: [nameParam('name')] }),
    },
    '/v1/credentials/{name}/rotate': {
      post: op('Rotate an existing credential (new version)', { parameters: [nameParam('name')] }),
    },
    '/v1/vault/rotate-master-key': {
      post: op('Re-wrap every data key with a new master key version'),
    },
    '/v1/authority/rotate-key': { post: op('Rotate the Authority signing key') },
    '/v1/services': {
      get: op('List configured services'),
      post: op('Add a service from a preset to nexus.yaml and reload (admin role)'),
    },
    '/v1/presets': { get: op('Ready service definitions (presets) for POST /v1/services') },
    '/v1/limits': { get: op('Configured limits with their live counters') },
    '/v1/config/reload': {
      post: op(
        'Re-read nexus.yaml: services, agents and policies apply to the next request. In a cluster every other node re-reads its own file too; `cluster.reports` holds their answers',
      ),
    },
    '/v1/policy/explain': {
      post: op('Explain the policy decision for a hypothetical request', {
        requestBody: jsonBody({
          type: 'object',
          required: ['agent', 'service', 'method', 'path'],
          properties: {
            agent: { type: 'string' },
            service: { type: 'string' },
            method: { type: 'string' },
            path: { type: 'string' },
            intent: { type: 'string' },
            act: { type: 'string' },
            delegation: { type: 'array', items: { type: 'string' }, maxItems: 8 },
            at: { type: 'string', format: 'date-time' },
          },
        }),
      }),
    },
    '/v1/connections': { get: op('List OAuth authorization-code connections (no tokens)') },
    '/v1/approvals': { get: op('List requests held for approval (approve policy rules)') },
    '/v1/approvals/{id}/approve': {
      post: op('Approve a held request: it is forwarded as it was signed', {
        parameters: [nameParam('id')],
      }),
    },
    '/v1/approvals/{id}/deny': {
      post: op('Deny a held request: the agent gets approval_denied', {
        parameters: [nameParam('id')],
      }),
    },
    '/v1/approvals/{id}/webhook': {
      post: op(
        "A webhook approver's decision ({id, decision: approve|deny, approver}), signed with Nexus-Webhook-Timestamp and Nexus-Webhook-Signature (HMAC-SHA256 with the rule's webhook secret) instead of an operator token",
        { parameters: [nameParam('id')], security: [] },
      ),
    },
    '/v1/status': {
      get: op(
        'Node status: listeners, uptime, agents, live leases, credential health per service, audit head and lag',
      ),
    },
    '/metrics': {
      get: op(
        'Prometheus metrics, text exposition (admin.metrics: the scrape token or an operator token; see docs/operations.md)',
      ),
    },
    '/v1/connections/{service}': {
      post: op('Start connecting an account: returns the provider authorize URL', {
        parameters: [nameParam('service')],
        requestBody: jsonBody({
          type: 'object',
          required: ['principal'],
          properties: { principal: { type: 'string' } },
        }),
      }),
    },
    '/v1/connections/{service}/{principal}': {
      delete: op('Delete a connection', {
        parameters: [nameParam('service'), nameParam('principal')],
      }),
    },
    '/v1/connections/callback': {
      get: op('OAuth redirect target; authorised by its one-time state', {
        security: [],
        parameters: [
          { name: 'code', in: 'query', schema: { type: 'string' } },
          { name: 'state', in: 'query', required: true, schema: { type: 'string' } },
        ],
      }),
    },
    '/v1/mcp/{service}/registration': {
      post: op(
        'Register Nexus as an OAuth client of a kind: mcp service (client ID metadata document, else dynamic client registration); stores the client credential, returns no secret',
        {
          parameters: [nameParam('service')],
          requestBody: jsonBody({
            type: 'object',
            properties: {
              method: { type: 'string', enum: ['cimd', 'dcr'] },
              replace: { type: 'boolean' },
            },
          }),
        },
      ),
    },
    '/v1/mcp/clients/{service}': {
      get: op("A kind: mcp service's OAuth client ID metadata document (public, no secret)", {
        security: [],
        parameters: [nameParam('service')],
      }),
    },
    '/v1/audit': { get: op('Query audit records') },
    '/v1/audit/export': { get: op('Export the audit log as JSON Lines') },
    '/v1/audit/verify': { get: op('Verify the audit hash chain and checkpoints') },
    '/v1/audit/checkpoints': { get: op('List signed checkpoints') },
  },
} as const;
