/**
 * Admin routes for upstream MCP authorization (MCP 2025-11-25 "Authorization"):
 *
 * - `POST /v1/mcp/{service}/registration` {method?, replace?} : discovers the MCP server's
 *   authorization server (RFC 9728, RFC 8414) and registers Nexus as its client (client ID
 *   metadata document, else RFC 7591 dynamic registration); the result goes to the
 *   service's client credential in the vault. Answers the method, client_id and issuer;
 *   never a secret.
 * - `GET /v1/mcp/clients/{service}` : the client ID metadata document of the service
 *   (public: the authorization server fetches it; it holds no secret).
 *
 * Both need a `kind: mcp` service with `auth.type: oauth2_authorization_code`. Accounts are
 * then connected with the `/v1/connections` routes, as for any such service.
 */
import { z } from 'zod';
import { NexusError } from '@nexus-proxy/protocol';
import { discoverMcpAuthorization } from '../mcp/discovery.js';
import {
  CLIENT_METADATA_PATH,
  clientMetadataDocument,
  clientMetadataUrl,
  registerMcpClient,
  registrationFields,
} from '../mcp/registration.js';
import type { ConnectionRegistry, ConnectionRoute } from './connections.js';

/** What the routes need from the node. */
export interface McpClientDeps {
  readonly connections: ConnectionRegistry;
  /** The configured services (kind and upstream). */
  readonly services: () => readonly { name: string; kind?: string; upstream: string }[];
  readonly vault: {
    set(name: string, fields: Record<string, string>): Promise<unknown>;
    list(): Promise<readonly { name: string }[]>;
  };
}

const registerBody = z.strictObject({
  method: z.enum(['cimd', 'dcr']).optional(),
  /** Registers again even if the client credential exists (it is overwritten). */
  replace: z.boolean().default(false),
});

function mcpService(deps: McpClientDeps, name: string) {
  const svc = deps.services().find((s) => s.name === name);
  const manager = deps.connections.get(name);
  if (svc === undefined || svc.kind !== 'mcp' || manager === undefined) {
    throw new NexusError(
      'not_found',
      'no kind: mcp service with oauth2_authorization_code auth by that name',
    );
  }
  return { svc, manager };
}

/** The MCP client routes. */
export function mcpClientRoutes(deps: McpClientDeps): ConnectionRoute[] {
  return [
    {
      method: 'GET',
      path: `${CLIENT_METADATA_PATH}/{service}`,
      public: true,
      handler({ params }) {
        const service = params['service'] as string;
        const svc = deps.services().find((s) => s.name === service);
        const manager = deps.connections.get(service);
        const redirectUri = manager?.redirectUri();
        const url = clientMetadataUrl(service, redirectUri);
        if (svc?.kind !== 'mcp' || redirectUri === undefined || url === undefined) {
          return Promise.reject(new NexusError('not_found'));
        }
        return Promise.resolve(clientMetadataDocument(url, redirectUri));
      },
    },
    {
      method: 'POST',
      path: '/v1/mcp/{service}/registration',
      public: false,
      async handler({ params, body, res }) {
        const { svc, manager } = mcpService(deps, params['service'] as string);
        const parsed = registerBody.safeParse(body ?? {});
        if (!parsed.success) {
          throw new NexusError('validation_failed', 'method: cimd or dcr; replace: boolean');
        }
        const credential = manager.clientCredential;
        const exists = (await deps.vault.list()).some((c) => c.name === credential);
        if (exists && !parsed.data.replace) {
          throw new NexusError('conflict', `credential "${credential}" exists; pass replace`);
        }
        const redirectUri = manager.redirectUri();
        if (redirectUri === undefined) {
          throw new NexusError('internal_error', 'no redirect_uri for OAuth connections');
        }
        const discovery = await discoverMcpAuthorization(svc.upstream);
        // MUST: the client is registered with the authorization server the service sends
        // its principals to, for tokens bound to this server (RFC 8707): a registration at
        // one server whose client_id goes to another is refused, as is a service that would
        // ask for tokens without the resource.
        const e = manager.endpoints;
        if (
          e.authorizeUrl !== discovery.authorizationEndpoint ||
          e.tokenUrl !== discovery.tokenEndpoint
        ) {
          throw new NexusError('upstream_invalid', undefined, {
            detail:
              "the service's authorize_url and token_url are not the discovered authorization server's: run `nexus mcp discover` again",
          });
        }
        const norm = (u: string) => u.replace(/\/$/, '');
        if (!e.resources.some((r) => norm(r) === norm(discovery.resource))) {
          throw new NexusError('upstream_invalid', undefined, {
            detail: `auth.resource must name the MCP server (${discovery.resource}), as RFC 8707 requires`,
          });
        }
        const r = await registerMcpClient({
          service: svc.name,
          discovery,
          redirectUri,
          ...(parsed.data.method === undefined ? {} : { prefer: parsed.data.method }),
        });
        await deps.vault.set(credential, registrationFields(r, discovery.issuer));
        res.statusCode = 201;
        return {
          service: svc.name,
          method: r.method,
          client_id: r.clientId,
          token_endpoint_auth_method: r.tokenEndpointAuthMethod,
          issuer: discovery.issuer,
          resource: discovery.resource,
          credential,
        };
      },
    },
  ];
}
