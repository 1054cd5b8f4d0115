/**
 * The contract between the proxy pipeline and every auth mechanic.
 *
 * A mechanic turns a service's `auth` config plus a vault credential into changes on the
 * outbound request (headers, query parameters, a client certificate, a signature). The
 * pipeline never knows which mechanic it runs: adding OAuth2, SigV4 or HMAC is a new
 * module registered in `mechanics/index.ts`, nothing else.
 */
import type { Dispatcher } from 'undici';
import type { z } from 'zod';
import type { LeaseClaims } from '@nexus-proxy/protocol';

/** A credential as the vault hands it to the pipeline. Internal only: never serialised. */
export interface ResolvedCredential {
  readonly name: string;
  readonly version: number;
  readonly fields: Readonly<Record<string, string>>;
}

/** The request as it will be sent upstream; a mechanic mutates it in place. */
export interface OutboundRequest {
  method: string;
  /** Absolute upstream URL, including the query the agent sent. */
  url: URL;
  /** Lower-case header names. The pipeline has already stripped agent credential headers. */
  headers: Record<string, string>;
  /** The verified request body (already buffered), or undefined when empty. */
  body: Uint8Array | undefined;
  /** Set by mechanics that need a client certificate or their own TLS settings (mtls). */
  dispatcher?: Dispatcher;
}

/** What the pipeline knows about the caller and the moment, for mechanics that need it. */
export interface MechanicContext {
  readonly service: string;
  readonly agent: string;
  /** The `act` principal of the lease, when the agent acts on someone's behalf. */
  readonly act: string | undefined;
  /** Milliseconds since the epoch. */
  readonly now: number;
  /**
   * The agent's verified lease (a WIMSE workload identity token) and its claims, for
   * mechanics that exchange the agent's identity for a downstream token (RFC 8693).
   */
  readonly lease: string | undefined;
  readonly claims: LeaseClaims | undefined;
  /** Loads a credential from the vault (the service's `auth.credential` when no name is given). */
  credential(name?: string): Promise<ResolvedCredential>;
}

/** The result of applying a mechanic. */
export interface AppliedAuth {
  /** Name and version of the credential used, for the audit record (never its value). */
  readonly credential?: { readonly name: string; readonly version: number };
  /**
   * Every secret value this request carries to the upstream: credential fields and derived
   * tokens in plain form AND exactly as they travel when the mechanic encodes them (a
   * query value percent-encoded, a Basic token in base64). The scrubber decodes one layer
   * of base64, hex, percent and escapes itself, so an upstream reflecting the plain value
   * encoded once is caught from the plain form, and one encoding the travelled form once
   * more (a redirect's `return_to=<the request URL, encoded>`) from the travelled form. The
   * scrubber redacts them from the responses of every service on the upstream's origin.
   * MUST include anything the upstream could reflect. MUST NOT include what never reaches
   * the upstream (signing keys, private keys, client secrets and assertions sent only to a
   * token endpoint): no upstream can reflect them.
   */
  readonly secrets: readonly string[];
}

/** One configured mechanic instance for one service. */
export interface Mechanic {
  readonly type: string;
  /** Lower-case header names this mechanic sets; agent-supplied copies are stripped. */
  readonly injectedHeaders: readonly string[];
  /** Query parameter names this mechanic sets; agent-supplied copies are stripped. */
  readonly injectedQueryParams: readonly string[];
  apply(request: OutboundRequest, ctx: MechanicContext): Promise<AppliedAuth>;
  /**
   * Called when the upstream answers 401. Returning true makes the pipeline apply the
   * mechanic again (for example with a freshly fetched token) and retry exactly once.
   */
  onUnauthorized?(ctx: MechanicContext): Promise<boolean>;
  /** Releases timers, pools and caches. */
  close?(): Promise<void>;
}

/**
 * The vault as seen by mechanics that keep credentials of their own (OAuth connections
 * store refresh tokens per principal). INTERNAL: values never leave the process.
 */
export interface MechanicVault {
  /** `fresh`: bypass the short decrypted-value cache (a value another node just wrote). */
  resolve(name: string, options?: { fresh?: boolean }): Promise<ResolvedCredential>;
  set(name: string, fields: Record<string, string>): Promise<{ name: string; version: number }>;
  delete(name: string): Promise<void>;
  describe(name: string): Promise<{ name: string; version: number } | undefined>;
  list(): Promise<readonly { name: string; version: number; createdAt: number }[]>;
}

/** Services a mechanic may need from the process (token endpoints use the dispatcher). */
export interface MechanicDeps {
  readonly clock: () => number;
  /** Dispatcher for calls the mechanic itself makes (token endpoints). */
  readonly dispatcher?: Dispatcher;
  /** Read-write vault access, for mechanics that store tokens (oauth2_authorization_code). */
  readonly vault?: MechanicVault;
  /**
   * Base URL of the admin listener, e.g. `http://127.0.0.1:7071` (default OAuth redirect
   * URIs); a function because the listener is bound after mechanics are created.
   */
  readonly adminUrl?: () => string | undefined;
  /**
   * The service's upstream connection settings, for mechanics that build their own
   * dispatcher (mtls): the CA bundle from `services.<name>.tls.ca_file` and the connect
   * timeout.
   */
  readonly upstream?: { readonly ca?: string; readonly connectTimeoutMs?: number };
  /** Called after each token fetch of a token-deriving mechanic (metrics). */
  readonly onTokenFetch?: (ok: boolean) => void;
  /**
   * What the nodes of a cluster share for OAuth connections (issue 13): a lock so that a
   * rotating refresh token is used by one node only, and the pending authorize links so a
   * callback reaching any node completes a connect. Without it, one process's memory.
   */
  readonly oauth?: OAuthCoordination;
}

/** Cluster-wide coordination of OAuth connections (see `app/oauth-coordination.ts`). */
export interface OAuthCoordination {
  /**
   * Runs `fn` while holding the lock `key`: no other holder of the same key on any node
   * runs at the same time. Fails (`store_unavailable`) when the lock cannot be taken.
   */
  exclusive<T>(key: string, fn: () => Promise<T>): Promise<T>;
  /** Stores a pending link under its state hash; `link` is a secret (sealed at rest). */
  putPending(stateHash: string, service: string, link: string, expiresAt: number): Promise<void>;
  /** The service of a pending, unexpired link. */
  pendingService(stateHash: string): Promise<string | undefined>;
  /** Consumes a pending link once across all nodes; `undefined` if unknown, used or expired. */
  takePending(stateHash: string): Promise<{ service: string; link: string } | undefined>;
}

/** A mechanic module: its config schema (the `auth` block without `type`) and factory. */
export interface MechanicDefinition<Options = unknown> {
  readonly type: string;
  readonly optionsSchema: z.ZodType<Options>;
  create(service: string, options: Options, deps: MechanicDeps): Mechanic;
}
