/**
 * `mtls`: present a client certificate to the upstream (TLS client authentication).
 *
 * The certificate, its private key and optionally a CA bundle for the upstream's server
 * certificate come from vault credential fields. The mechanic hands the pipeline its own
 * undici dispatcher (`out.dispatcher`) holding them, one per credential version: a rotated
 * credential gets a fresh connection pool, and the old one is closed once idle.
 *
 * TLS failures (the upstream refuses the certificate, or its own certificate does not
 * verify) surface as `upstream_unreachable`; a credential that is not a usable
 * certificate/key pair is `credential_unavailable`. MUST: the private key never leaves the
 * process and no error names a value.
 */
import { createSecureContext } from 'node:tls';
import { Agent, type Dispatcher } from 'undici';
import { z } from 'zod';
import { NexusError } from '@nexus-proxy/protocol';
import { applied, optionalField, requireField, SecretSet } from './credential.js';
import { credentialUnavailable } from './errors.js';
import type { Mechanic, MechanicDefinition, ResolvedCredential } from './mechanic.js';
import { credentialName, fieldName } from './schema.js';

/** Options of `auth: { type: mtls, ... }`. */
export const mtlsOptionsSchema = z.strictObject({
  /** Fields `cert` (PEM chain), `key` (PEM), optional `ca` (PEM) and `passphrase`. */
  credential: credentialName,
  cert_field: fieldName.default('cert'),
  key_field: fieldName.default('key'),
  ca_field: fieldName.default('ca'),
  passphrase_field: fieldName.default('passphrase'),
  /** TLS server name (SNI and certificate check) when it differs from the upstream host. */
  servername: z
    .string()
    .regex(/^[A-Za-z0-9.-]{1,253}$/, 'must be a DNS name')
    .optional(),
});

/** Options of the `mtls` mechanic. */
export type MtlsOptions = z.infer<typeof mtlsOptionsSchema>;

/**
 * Node TLS error codes raised when a handshake fails on either side; all mean "the upstream
 * and Nexus could not agree on a trusted connection".
 */
function isTlsFailure(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code !== 'string') return false;
  return (
    code.startsWith('ERR_SSL_') ||
    code.startsWith('ERR_TLS_') ||
    /CERT|SELF_SIGNED|UNABLE_TO_/.test(code) ||
    code === 'ECONNRESET' ||
    code === 'EPIPE'
  );
}

/**
 * Wraps a dispatcher so TLS failures become `upstream_unreachable` NexusErrors, which the
 * pipeline reports as such instead of an internal error.
 */
function mapTlsErrors(agent: Dispatcher): Dispatcher {
  return agent.compose(
    (dispatch) => (opts, handler) =>
      dispatch(opts, {
        ...handler,
        onConnect: handler.onConnect?.bind(handler),
        onHeaders: handler.onHeaders?.bind(handler),
        onData: handler.onData?.bind(handler),
        onComplete: handler.onComplete?.bind(handler),
        onUpgrade: handler.onUpgrade?.bind(handler),
        onBodySent: handler.onBodySent?.bind(handler),
        onRequestStart: handler.onRequestStart?.bind(handler),
        onResponseStart: handler.onResponseStart?.bind(handler),
        onResponseData: handler.onResponseData?.bind(handler),
        onResponseEnd: handler.onResponseEnd?.bind(handler),
        onResponseError: handler.onResponseError
          ? (controller, err) =>
              handler.onResponseError?.(
                controller,
                isTlsFailure(err) ? new NexusError('upstream_unreachable') : err,
              )
          : undefined,
        onError: handler.onError
          ? (err) =>
              handler.onError?.(isTlsFailure(err) ? new NexusError('upstream_unreachable') : err)
          : undefined,
      }),
  );
}

interface Pooled {
  readonly agent: Agent;
  readonly dispatcher: Dispatcher;
}

/** The `mtls` mechanic. */
export const mtlsMechanic: MechanicDefinition<MtlsOptions> = {
  type: 'mtls',
  optionsSchema: mtlsOptionsSchema,
  create(service, options, deps): Mechanic {
    // One agent per credential name; replaced when the credential version changes.
    const pools = new Map<string, { version: number; pooled: Pooled }>();
    const what = `service "${service}" mtls`;

    function build(credential: ResolvedCredential): Pooled {
      const cert = requireField(credential, options.cert_field);
      const key = requireField(credential, options.key_field);
      const ca = optionalField(credential, options.ca_field) || deps.upstream?.ca;
      const passphrase = optionalField(credential, options.passphrase_field) || undefined;
      try {
        // Fails here, not on the wire, when the key does not match the certificate.
        createSecureContext({ cert, key, passphrase, ca });
      } catch {
        throw credentialUnavailable(
          `${what}: credential "${credential.name}" is not a usable certificate and key`,
        );
      }
      const agent = new Agent({
        connect: {
          cert,
          key,
          passphrase,
          ca,
          servername: options.servername,
          timeout: deps.upstream?.connectTimeoutMs,
        },
        connections: 128,
      });
      return { agent, dispatcher: mapTlsErrors(agent) };
    }

    return {
      type: 'mtls',
      injectedHeaders: [],
      injectedQueryParams: [],
      async apply(request, ctx) {
        const credential = await ctx.credential(options.credential);
        let entry = pools.get(credential.name);
        if (entry === undefined || entry.version !== credential.version) {
          const old = entry;
          entry = { version: credential.version, pooled: build(credential) };
          pools.set(credential.name, entry);
          // In-flight requests on the old pool finish; then it closes.
          if (old !== undefined) void old.pooled.agent.close().catch(() => undefined);
        }
        request.dispatcher = entry.pooled.dispatcher;
        // Nothing is injected into the request: the certificate is public (the upstream sees
        // it in the handshake) and the key never travels, so no value is the upstream's to
        // reflect (issue 10: secrets that never travel are in no response matcher).
        return applied(credential, new SecretSet());
      },
      async close() {
        const all = [...pools.values()];
        pools.clear();
        await Promise.all(all.map((e) => e.pooled.agent.close().catch(() => undefined)));
      },
    };
  },
};
