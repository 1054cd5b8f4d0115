/**
 * A small round-robin HTTP load balancer for cluster tests: each request goes to the next
 * target in turn (no stickiness, as any balancer in front of a Nexus cluster). A target
 * that cannot be reached answers 502 for that request; the list can change at any time.
 */
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface TestBalancer {
  readonly url: string;
  /** Base URLs (`http://127.0.0.1:port`) requests are spread over, in turn. */
  targets: string[];
  close(): Promise<void>;
}

export async function startBalancer(targets: string[], port = 0): Promise<TestBalancer> {
  let next = 0;
  const balancer = { targets } as TestBalancer;
  const server: Server = createServer((req, res) => {
    const list = balancer.targets;
    if (list.length === 0) {
      res.writeHead(503).end();
      return;
    }
    const target = new URL(list[next++ % list.length] as string);
    const upstream = request(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(upstream);
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  Object.assign(balancer, {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  });
  return balancer;
}
