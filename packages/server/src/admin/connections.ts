/**
 * Admin routes for OAuth connections (`oauth2_authorization_code` services):
 *
 * - `POST /v1/connections/{service}` {principal} -> {authorize_url, state_expires_at}
 * - `GET /v1/connections/callback?code&state` : the provider's redirect (no operator token)
 * - `GET /v1/connections[?service=]` : connections, never a token
 * - `DELETE /v1/connections/{service}/{principal}` : removes one
 *
 * MUST: the callback is the only route without an operator token; it is authorised by the
 * one-time, expiring `state` alone (stored hashed by the mechanic), and it answers with a
 * static page that carries neither the code nor any token.
 */
import type { ServerResponse } from 'node:http';
import { z } from 'zod';
import { NexusError } from '@nexus-proxy/protocol';
import {
  CONNECTION_CALLBACK_PATH,
  principalSchema,
  sha256Hex,
  type OAuthConnections,
} from '../mechanics/oauth2-authorization-code.js';

/** The connection managers of the configured services, by service name. */
export type ConnectionRegistry = ReadonlyMap<string, OAuthConnections>;

/** A route as `admin/server.ts` mounts it. */
export interface ConnectionRoute {
  readonly method: string;
  readonly path: string;
  readonly public: boolean;
  readonly handler: (ctx: {
    params: Record<string, string>;
    query: URLSearchParams;
    body: unknown;
    res: ServerResponse;
  }) => Promise<unknown>;
}

const connectBody = z.strictObject({ principal: principalSchema });

const iso = (ms: number): string | undefined =>
  Number.isFinite(ms) ? new Date(ms).toISOString() : undefined;

function managerFor(registry: ConnectionRegistry, service: string): OAuthConnections {
  const m = registry.get(service);
  if (m === undefined)
    throw new NexusError('not_found', 'no oauth2_authorization_code service by that name');
  return m;
}

const PAGE = (title: string, text: string): string =>
  `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head>` +
  `<body><h1>${title}</h1><p>${text}</p></body></html>`;

/**
 * The connection routes over `registry`. Mounted by the admin server; every route but the
 * callback goes through its operator-token check.
 */
export function connectionRoutes(registry: ConnectionRegistry): ConnectionRoute[] {
  return [
    {
      method: 'GET',
      path: CONNECTION_CALLBACK_PATH,
      public: true,
      async handler({ query, res }) {
        const state = query.get('state');
        if (state === null || state === '' || state.length > 512) {
          throw new NexusError('forbidden', 'missing or invalid state');
        }
        const hash = sha256Hex(state);
        let manager: OAuthConnections | undefined;
        for (const m of registry.values()) {
          if (await m.owns(hash)) {
            manager = m;
            break;
          }
        }
        if (manager === undefined)
          throw new NexusError('forbidden', 'unknown, used or expired state');
        const code = query.get('code') ?? undefined;
        const error = query.get('error') ?? undefined;
        await manager.complete(hash, { code, error });
        const html = PAGE(
          'Connected',
          'The account is connected to Nexus. You can close this window.',
        );
        res.writeHead(200, {
          'content-type': 'text/html; charset=utf-8',
          'cache-control': 'no-store',
          'referrer-policy': 'no-referrer',
          'content-security-policy': "default-src 'none'",
          'content-length': Buffer.byteLength(html),
        });
        res.end(html);
        return undefined;
      },
    },
    {
      method: 'GET',
      path: '/v1/connections',
      public: false,
      async handler({ query }) {
        const service = query.get('service');
        const managers =
          service === null ? [...registry.values()] : [managerFor(registry, service)];
        const connections = [];
        for (const m of managers) {
          for (const c of await m.list()) {
            connections.push({
              service: c.service,
              principal: c.principal,
              created_at: iso(c.createdAt),
              refreshed_at: iso(c.updatedAt),
            });
          }
        }
        return { connections };
      },
    },
    {
      method: 'POST',
      path: '/v1/connections/{service}',
      public: false,
      async handler({ params, body, res }) {
        const manager = managerFor(registry, params['service'] as string);
        const parsed = connectBody.safeParse(body ?? {});
        if (!parsed.success)
          throw new NexusError(
            'validation_failed',
            'principal: required, 1 to 256 printable characters',
          );
        const r = await manager.start(parsed.data.principal);
        res.statusCode = 201;
        return {
          service: r.service,
          principal: r.principal,
          authorize_url: r.authorizeUrl,
          state_expires_at: iso(r.expiresAt),
        };
      },
    },
    {
      method: 'DELETE',
      path: '/v1/connections/{service}/{principal}',
      public: false,
      async handler({ params, res }) {
        const manager = managerFor(registry, params['service'] as string);
        await manager.remove(params['principal'] as string);
        res.statusCode = 204;
        return undefined;
      },
    },
  ];
}
