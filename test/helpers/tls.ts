/**
 * Test certificates made with `openssl` in a temp directory: a CA, a server certificate for
 * 127.0.0.1/localhost, a client certificate from the same CA and one from a rogue CA; and
 * an HTTPS upstream that requires a client certificate and records who presented it.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';

export interface Pem {
  readonly cert: string;
  readonly key: string;
}

export interface TestPki {
  readonly dir: string;
  readonly ca: Pem & { readonly certFile: string };
  readonly server: Pem;
  readonly client: Pem;
  /** A client certificate from another CA: the upstream refuses it. */
  readonly rogue: Pem;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

function makeCa(dir: string, name: string): void {
  openssl(dir, [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.crt`,
    '-days',
    '2',
    '-subj',
    `/CN=${name}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
}

function makeLeaf(dir: string, name: string, ca: string, cn: string, ext: string): void {
  openssl(dir, [
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.csr`,
    '-subj',
    `/CN=${cn}`,
  ]);
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${ca}.crt`,
    '-CAkey',
    `${ca}.key`,
    '-CAcreateserial',
    '-out',
    `${name}.crt`,
    '-days',
    '2',
    '-extfile',
    `${name}.ext`,
  ]);
}

/** Creates the test PKI (a few hundred ms). */
export function makeTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-pki-'));
  makeCa(dir, 'ca');
  makeCa(dir, 'rogue-ca');
  makeLeaf(
    dir,
    'server',
    'ca',
    'localhost',
    'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n',
  );
  makeLeaf(dir, 'client', 'ca', 'nexus-client', 'extendedKeyUsage=clientAuth\n');
  makeLeaf(dir, 'rogue', 'rogue-ca', 'nexus-client', 'extendedKeyUsage=clientAuth\n');
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');
  const pem = (n: string): Pem => ({ cert: read(`${n}.crt`), key: read(`${n}.key`) });
  return {
    dir,
    ca: { ...pem('ca'), certFile: join(dir, 'ca.crt') },
    server: pem('server'),
    client: pem('client'),
    rogue: pem('rogue'),
  };
}

export interface SeenRequest {
  readonly url: string;
  readonly headers: Record<string, string | string[] | undefined>;
  /** Subject CN of the verified client certificate. */
  readonly clientCn: string | undefined;
}

export interface TlsUpstream {
  readonly url: string;
  readonly requests: SeenRequest[];
  /** TLS handshakes refused for a missing or untrusted client certificate. */
  readonly refused: () => number;
  close(): Promise<void>;
}

/** An HTTPS server that requires a client certificate issued by `pki.ca`. */
export async function startTlsUpstream(pki: TestPki): Promise<TlsUpstream> {
  const requests: SeenRequest[] = [];
  let refused = 0;
  const server: Server = createServer(
    {
      cert: pki.server.cert,
      key: pki.server.key,
      ca: pki.ca.cert,
      requestCert: true,
      rejectUnauthorized: true,
    },
    (req, res) => {
      const socket = req.socket as TLSSocket;
      const peer = socket.getPeerCertificate();
      const clientCn = socket.authorized ? (peer.subject?.CN as string | undefined) : undefined;
      requests.push({ url: req.url ?? '', headers: req.headers, clientCn });
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ ok: true, client: clientCn, url: req.url }));
    },
  );
  server.on('tlsClientError', () => refused++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    requests,
    refused: () => refused,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
