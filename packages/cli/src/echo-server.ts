/**
 * `nexus echo-server`: a loopback upstream that answers every request with what it
 * received (method, target, headers, body) as JSON. For trying Nexus without a real API:
 * it shows exactly what Nexus injected, and the agent sees the same echo scrubbed.
 */
import { createServer, type Server } from 'node:http';

export function startEchoServer(host: string, port: number): Promise<Server> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.stringify(
        {
          method: req.method,
          url: req.url,
          headers: req.headers,
          body: Buffer.concat(chunks).toString('utf8'),
        },
        null,
        2,
      );
      // This stand-in API is the operator's own: it shows what Nexus injected.
      process.stdout.write(
        `${req.method} ${req.url} authorization: ${req.headers.authorization ?? '(none)'}\n`,
      );
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(body + '\n');
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
