// The hand-written Node proxy a user might write: node:http in front, undici Pool to the
// upstream, a static Authorization header injected, bodies streamed both ways, no
// verification. Usage: node node-proxy.mjs <port> <upstream origin>.
import { createServer } from 'node:http';
import { Pool } from 'undici';

const port = Number(process.argv[2]);
const origin = process.argv[3];
const pool = new Pool(origin, { connections: 128 });
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'host', 'upgrade']);

const server = createServer(async (req, res) => {
  const headers = {};
  for (const [k, v] of Object.entries(req.headers)) if (!HOP.has(k)) headers[k] = v;
  headers.authorization = 'Bearer bench-static-token-0123456789abcdef';
  try {
    const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
    const up = await pool.request({
      path: req.url,
      method: req.method,
      headers,
      body: hasBody ? req : undefined,
    });
    const out = {};
    for (const [k, v] of Object.entries(up.headers)) if (!HOP.has(k)) out[k] = v;
    res.writeHead(up.statusCode, out);
    res.flushHeaders();
    for await (const chunk of up.body) res.write(chunk);
    res.end();
  } catch {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  }
});
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1', () => console.log('node proxy listening'));
process.on('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  void pool.close();
  process.exit(0);
});
