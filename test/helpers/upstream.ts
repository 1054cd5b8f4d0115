/**
 * A real loopback upstream for end-to-end tests: records every request it receives
 * (method, target, headers, body) and answers with a handler the test sets (by default it
 * echoes the request as JSON). `startRawUpstream` answers raw bytes instead, for the
 * malformed answers no HTTP server library would send.
 */
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';

export interface RecordedRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  rawHeaders: string[];
  body: Buffer;
}

export type UpstreamHandler = (req: RecordedRequest, res: ServerResponse) => void | Promise<void>;

export interface TestUpstream {
  readonly url: string;
  readonly port: number;
  readonly requests: RecordedRequest[];
  handle(handler: UpstreamHandler): void;
  reset(): void;
  close(): Promise<void>;
}

export const echoHandler: UpstreamHandler = (req, res) => {
  res.setHeader('content-type', 'application/json');
  res.end(
    JSON.stringify({
      method: req.method,
      url: req.url,
      headers: req.headers,
      body: req.body.toString('utf8'),
    }),
  );
};

export async function startUpstream(): Promise<TestUpstream> {
  let handler: UpstreamHandler = echoHandler;
  const requests: RecordedRequest[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const recorded: RecordedRequest = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        body: Buffer.concat(chunks),
      };
      requests.push(recorded);
      Promise.resolve(handler(recorded, res)).catch(() => res.destroy());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    handle(h) {
      handler = h;
    },
    reset() {
      requests.length = 0;
      handler = echoHandler;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A loopback upstream that answers raw bytes (for malformed answers no HTTP server sends). */
export interface RawUpstream {
  readonly url: string;
  /** The request heads received (request line and header fields, as latin1 text). */
  readonly heads: string[];
  /** Sets the bytes written back once a request head has arrived; the socket is then ended. */
  answer(bytes: string | Buffer): void;
  close(): Promise<void>;
}

export async function startRawUpstream(): Promise<RawUpstream> {
  let payload: string | Buffer = 'HTTP/1.1 204 No Content\r\n\r\n';
  const heads: string[] = [];
  const sockets = new Set<Socket>();
  const server = createNetServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let seen = '';
    socket.on('data', (c: Buffer) => {
      seen += c.toString('latin1');
      const end = seen.indexOf('\r\n\r\n');
      if (end === -1 || seen === '') return;
      heads.push(seen.slice(0, end));
      seen = '';
      socket.end(typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    heads,
    answer(bytes) {
      payload = bytes;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
