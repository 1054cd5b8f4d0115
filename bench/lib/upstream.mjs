// The bench upstream: a fast loopback node:http server, run as its own process.
//   /small...  reads the request body, answers 1 KiB (application/json)
//   /large...  reads the request body, answers 1 MiB (application/octet-stream)
//   /sse...    text/event-stream: the first event at once, then 3 more 5 ms apart
// Usage: node upstream.mjs <port>. Prints "upstream listening" when ready.
import { createServer } from 'node:http';

const port = Number(process.argv[2]);
const SMALL = Buffer.from(JSON.stringify({ ok: true, pad: 'x'.repeat(1024 - 24) }));
const LARGE = Buffer.alloc(1024 * 1024, 'abcdefghijklmnopqrstuvwxyz0123456789\n');

const server = createServer((req, res) => {
  const url = req.url ?? '/';
  let bytes = 0;
  req.on('data', (c) => (bytes += c.length));
  req.on('end', () => {
    if (url.startsWith('/sse')) {
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        'x-accel-buffering': 'no',
      });
      let n = 0;
      const send = () => {
        res.write(`id: ${n}\ndata: {"n":${n},"bytes_in":${bytes}}\n\n`);
        if (++n < 4) setTimeout(send, 5);
        else res.end();
      };
      send();
      return;
    }
    const large = url.startsWith('/large');
    res.writeHead(200, {
      'content-type': large ? 'application/octet-stream' : 'application/json',
      'content-length': large ? LARGE.length : SMALL.length,
    });
    res.end(large ? LARGE : SMALL);
  });
});
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1', () => console.log('upstream listening'));
process.on('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  process.exit(0);
});
