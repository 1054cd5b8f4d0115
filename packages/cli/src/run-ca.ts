/**
 * The per-run certificate authority of forward-proxy mode (issue 11): `nexus run` makes one
 * at start, so that the sidecar can answer a `CONNECT api.example.com:443` with a
 * certificate the child trusts, read the request inside and sign it like any other.
 *
 * MUST: the CA's private key is generated non-extractable in this process's WebCrypto and
 * is never written anywhere; it dies with the run. Only its certificate is written (for
 * the child's SSL_CERT_FILE & co.). MUST: the CA is name-constrained to the hosts the
 * node's services own (permitted dNSName subtrees, a critical extension), so even a copy
 * of it could vouch for no other name in clients that enforce name constraints (OpenSSL,
 * Go, NSS, Node); it is valid for a week (a run cannot outlive its lease chain, 24 h by
 * default), from five minutes back (clock skew).
 */
// @peculiar/x509 resolves its algorithms through tsyringe, which needs this polyfill loaded
// first (ESM evaluates imports in order).
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  GeneralName,
  GeneralSubtree,
  GeneralSubtrees,
  NameConstraints,
  id_ce_nameConstraints,
} from '@peculiar/asn1-x509';
import * as x509 from '@peculiar/x509';

// @peculiar/x509 takes the standard WebCrypto object; Node's is one.
const crypto = webcrypto;
const provider = webcrypto as never;
const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;

/** A leaf certificate and its key, as `tls.createSecureContext` takes them. */
export interface LeafCredentials {
  readonly cert: string;
  readonly key: string;
}

export interface RunCa {
  /** The CA certificate (PEM), for the child's trust stores. */
  readonly certPem: string;
  /** A leaf for `host` (one of the owned hosts), signed by the CA; cached per host. */
  leaf(host: string): Promise<LeafCredentials>;
}

function pem(label: string, der: ArrayBuffer): string {
  const b64 = Buffer.from(der).toString('base64');
  return `-----BEGIN ${label}-----\n${b64.replace(/.{64}/g, '$&\n').replace(/\n$/, '')}\n-----END ${label}-----\n`;
}

/**
 * Creates the CA for `hosts` (lower-case DNS names). Leaves share one key pair (made here,
 * in memory) so a new host costs one signature, not a key generation.
 */
export async function createRunCa(
  hosts: readonly string[],
  options: { lifetimeMs?: number; now?: () => number } = {},
): Promise<RunCa> {
  if (hosts.length === 0) throw new Error('a run CA needs at least one host');
  const now = (options.now ?? Date.now)();
  const notBefore = new Date(now - 5 * 60_000);
  const notAfter = new Date(now + (options.lifetimeMs ?? 7 * 24 * 3600_000));
  const caKeys = (await crypto.subtle.generateKey(EC, false, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const constraints = new NameConstraints({
    permittedSubtrees: new GeneralSubtrees(
      hosts.map((h) => new GeneralSubtree({ base: new GeneralName({ dNSName: h }) })),
    ),
  });
  const serial = (): string =>
    Buffer.from(crypto.getRandomValues(new Uint8Array(16)))
      .toString('hex')
      .replace(/^[89a-f]/, '1');
  const ca = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serial(),
      name: `CN=Nexus run CA ${new Date(now).toISOString()}, O=Nexus (per-run, in-memory key)`,
      notBefore,
      notAfter,
      keys: caKeys as never,
      signingAlgorithm: SIGN,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
          true,
        ),
        new x509.Extension(id_ce_nameConstraints, true, AsnConvert.serialize(constraints)),
        await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey as never, false, provider),
      ],
    },
    provider,
  );
  const leafKeys = (await crypto.subtle.generateKey(EC, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const leafKeyPem = pem(
    'PRIVATE KEY',
    await crypto.subtle.exportKey('pkcs8', leafKeys.privateKey),
  );
  const owned = new Set(hosts);
  const cache = new Map<string, Promise<LeafCredentials>>();

  const issue = async (host: string): Promise<LeafCredentials> => {
    const leaf = await x509.X509CertificateGenerator.create(
      {
        serialNumber: serial(),
        subject: `CN=${host}`,
        issuer: ca.subject,
        notBefore,
        notAfter,
        publicKey: leafKeys.publicKey as never,
        signingKey: caKeys.privateKey as never,
        signingAlgorithm: SIGN,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
          new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: host }], false),
          await x509.AuthorityKeyIdentifierExtension.create(
            caKeys.publicKey as never,
            false,
            provider,
          ),
        ],
      },
      provider,
    );
    return { cert: leaf.toString('pem') + '\n', key: leafKeyPem };
  };

  return {
    certPem: ca.toString('pem') + '\n',
    leaf(host) {
      // MUST: a leaf only for a host a service owns (the CA's constraints say the same).
      if (!owned.has(host)) return Promise.reject(new Error('not an owned host'));
      let p = cache.get(host);
      if (p === undefined) {
        p = issue(host);
        cache.set(host, p);
      }
      return p;
    },
  };
}
