/**
 * Forward-proxy mode of the `nexus run` sidecar (issue 11): the child's HTTP_PROXY and
 * HTTPS_PROXY. A plain `http://host/...` absolute-form request, or a `CONNECT host:port`
 * tunnel opened with the run's CA, for a host a service owns (`services.<name>.hosts`) is
 * turned into a path-mode call `/{service}/{path}` and goes through the sidecar's one relay:
 * signed with the lease, then policy, audit, credential injection and scrubbing at the
 * proxy exactly as for every other call.
 *
 * MUST: a host no service owns is refused (problem+json `host_unowned` for plain HTTP, 403
 * on CONNECT), unless the node allows a blind passthrough tunnel for this agent, host and
 * port (`passthrough:` rules, `POST /v1/agent/passthrough`, which audits it): the node is
 * asked before each such tunnel opens, and a tunnel is opened only on its yes. A passthrough
 * tunnel is relayed byte for byte: no interception, no credential. MUST: inside a tunnel, every request is for
 * the tunnel's host (a different Host is refused: no hopping to another service through
 * one tunnel). MUST: only HTTP/1.1 is offered over TLS (ALPN); a client that insists on h2
 * fails the handshake with `no_application_protocol`.
 */
import {
  createServer,
  STATUS_CODES,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { connect as tcpConnect } from 'node:net';
import type { Duplex } from 'node:stream';
import { createSecureContext, TLSSocket, type SecureContext } from 'node:tls';
import type { RunCa } from './run-ca.js';
import { problem } from './sidecar-problem.js';
import { adoptUpgrade } from './sidecar-upgrade.js';

/** One service's claim, as the node lists it. */
export interface OwnedHost {
  readonly service: string;
  /** The upstream's path; requests must lie under it, and it is removed. */
  readonly pathPrefix: string;
}

export interface ForwardProxyOptions {
  /** Lower-case host name -> its service. */
  readonly hosts: ReadonlyMap<string, OwnedHost>;
  /** The run's CA; without it CONNECT to an owned host is refused (nothing to intercept). */
  readonly ca?: RunCa;
  /**
   * Asks the node whether a CONNECT to a host no service owns may be tunnelled blind
   * (`NexusAgent.passthrough`): resolves on yes (the node has audited it), rejects with the
   * refusal otherwise. Absent: every unowned host is refused.
   */
  readonly passthrough?: (host: string, port: number) => Promise<unknown>;
}

type Relay = (req: IncomingMessage, res: ServerResponse, target: string) => Promise<void>;

export interface ForwardProxy {
  /** A request whose target is absolute-form. */
  absolute(req: IncomingMessage, res: ServerResponse): Promise<void>;
  /** The sidecar server's `connect` event. */
  connect(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Ends every open tunnel. */
  close(): void;
}

const UNOWNED_TITLE =
  'no Nexus service owns this host: declare it under services.<name>.hosts, or call $NEXUS_PROXY/<service>/...';

/**
 * The path-mode target for `rawTarget` (origin-form, as sent) on an owned host, or
 * undefined when it lies outside the service's upstream path.
 */
export function serviceTarget(owner: OwnedHost, rawTarget: string): string | undefined {
  const prefix = owner.pathPrefix;
  let rest = rawTarget;
  if (prefix !== '') {
    if (!rawTarget.startsWith(prefix)) return undefined;
    rest = rawTarget.slice(prefix.length);
    if (rest !== '' && !rest.startsWith('/') && !rest.startsWith('?')) return undefined;
  }
  if (rest === '' || rest.startsWith('?')) rest = `/${rest}`;
  return `/${owner.service}${rest}`;
}

export function createForwardProxy(options: ForwardProxyOptions, relay: Relay): ForwardProxy {
  const tunnels = new Set<Duplex>();
  const contexts = new Map<string, Promise<SecureContext>>();
  const tunnelHost = new WeakMap<object, string>();
  const blind = new Set<Duplex>();

  // A blind tunnel the node allowed (and audited) for this host and port: bytes are
  // relayed as they are, in both directions; the TLS inside is the client's and the host's.
  const passthrough = (
    socket: Duplex,
    head: Buffer,
    host: string,
    port: number,
    ask: (host: string, port: number) => Promise<unknown>,
  ): void => {
    blind.add(socket);
    socket.once('close', () => blind.delete(socket));
    ask(host, port).then(
      () => {
        if (socket.destroyed) return;
        const upstream = tcpConnect({ host, port });
        let open = false;
        blind.add(upstream);
        upstream.on('error', () => {
          if (!open)
            refuse(socket, 502, 'upstream_unreachable', 'the sidecar could not reach the host');
        });
        upstream.once('close', () => {
          blind.delete(upstream);
          if (open) socket.destroy();
        });
        socket.once('close', () => upstream.destroy());
        upstream.once('connect', () => {
          open = true;
          socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
          if (head.length > 0) upstream.write(head);
          socket.pipe(upstream);
          upstream.pipe(socket);
        });
      },
      (err: unknown) => {
        const e = err as { code?: unknown; status?: unknown; detail?: unknown };
        const code = typeof e.code === 'string' ? e.code : 'proxy_unreachable';
        if (code === 'host_unowned' || code === 'not_found') {
          // not_found: a node without passthrough support; its answer is the same no.
          const detail = typeof e.detail === 'string' ? e.detail : UNOWNED_TITLE;
          refuse(socket, 403, 'host_unowned', detail);
          return;
        }
        const status = typeof e.status === 'number' && e.status >= 400 ? e.status : 502;
        refuse(socket, status, code, 'the node did not allow the passthrough tunnel');
      },
    );
  };

  const context = (host: string, ca: RunCa): Promise<SecureContext> => {
    let p = contexts.get(host);
    if (p === undefined) {
      p = ca.leaf(host).then((leaf) => createSecureContext({ cert: leaf.cert, key: leaf.key }));
      contexts.set(host, p);
    }
    return p;
  };

  // The decrypted side of every tunnel: origin-form requests for the tunnel's host.
  const onInner = (req: IncomingMessage, res: ServerResponse): void => {
    const host = tunnelHost.get(req.socket);
    const owner = host === undefined ? undefined : options.hosts.get(host);
    if (host === undefined || owner === undefined) {
      problem(res, 403, 'host_unowned', UNOWNED_TITLE);
      return;
    }
    // Inside a tunnel only origin-form targets: an absolute URL there could name another host.
    if (!(req.url ?? '').startsWith('/')) {
      problem(res, 400, 'request_invalid', 'a request inside a tunnel must be origin-form');
      return;
    }
    const named = hostOf(req.headers.host ?? '');
    if (named !== host) {
      problem(res, 421, 'host_mismatch', 'the Host field does not name the tunnel host');
      return;
    }
    const target = serviceTarget(owner, req.url ?? '');
    if (target === undefined) {
      problem(res, 404, 'not_found', "the path lies outside the service's upstream");
      return;
    }
    void relay(req, res, target);
  };
  const inner: Server = createServer(onInner);
  // `wss://` inside a tunnel: the handshake takes the same way (sidecar-upgrade.ts).
  inner.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) =>
    onInner(req, adoptUpgrade(req, socket, head)),
  );

  return {
    async absolute(req, res) {
      let url: URL;
      try {
        url = new URL(req.url ?? '');
      } catch {
        problem(res, 400, 'request_invalid', 'the request target is not a valid URL');
        return;
      }
      if (url.protocol !== 'http:') {
        problem(
          res,
          400,
          'request_invalid',
          'only http:// targets are proxied; use CONNECT for https',
        );
        return;
      }
      const owner = options.hosts.get(url.hostname.toLowerCase());
      if (owner === undefined) {
        problem(res, 403, 'host_unowned', UNOWNED_TITLE);
        return;
      }
      // The raw path and query as sent (the URL parser would normalise dot segments).
      const raw = (req.url ?? '').replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i, '');
      const target = serviceTarget(owner, raw === '' ? '/' : raw);
      if (target === undefined) {
        problem(res, 404, 'not_found', "the path lies outside the service's upstream");
        return;
      }
      await relay(req, res, target);
    },

    connect(req, socket, head) {
      socket.on('error', () => socket.destroy());
      const m = /^([A-Za-z0-9.-]+):(\d{1,5})$/.exec(req.url ?? '');
      const host = m?.[1]?.toLowerCase();
      const port = m?.[2];
      const ca = options.ca;
      if (host !== undefined && port !== undefined && !options.hosts.has(host)) {
        if (options.passthrough === undefined) refuse(socket, 403, 'host_unowned', UNOWNED_TITLE);
        else passthrough(socket, head, host, Number(port), options.passthrough);
        return;
      }
      if (host === undefined || ca === undefined) {
        refuse(socket, 403, 'host_unowned', UNOWNED_TITLE);
        return;
      }
      tunnels.add(socket);
      socket.once('close', () => tunnels.delete(socket));
      context(host, ca).then(
        (secureContext) => {
          if (socket.destroyed) return;
          socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
          if (head.length > 0) socket.unshift(head);
          // A tunnel to port 80 carries plain HTTP (undici's proxy agents tunnel every
          // request, http:// too); any other port carries TLS.
          if (port === '80') {
            tunnelHost.set(socket, host);
            inner.emit('connection', socket);
            return;
          }
          const tls = new TLSSocket(socket, {
            isServer: true,
            secureContext,
            ALPNProtocols: ['http/1.1'],
          });
          tls.on('error', () => tls.destroy());
          tunnelHost.set(tls, host);
          inner.emit('connection', tls);
        },
        () => refuse(socket, 502, 'proxy_unreachable', 'the sidecar could not open the tunnel'),
      );
    },

    close() {
      for (const s of tunnels) s.destroy();
      for (const s of blind) s.destroy();
      inner.closeAllConnections();
    },
  };
}

/** The host name of a Host field (`name[:port]`), lower-cased. */
function hostOf(field: string): string {
  return field.replace(/:\d+$/, '').toLowerCase();
}

/** Refuses a CONNECT with a problem+json answer on the raw socket. */
function refuse(socket: Duplex, status: number, code: string, title: string): void {
  const body = JSON.stringify({ type: `urn:nexus:problem:${code}`, title, status, code });
  const reason = STATUS_CODES[status] ?? 'Error';
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/problem+json\r\nnexus-error: ${code}\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}
