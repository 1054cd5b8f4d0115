/**
 * What the console may call of the admin API, and what it changes in the answers.
 *
 * MUST: only routes whose answers never hold a secret are here. Left out on purpose:
 * enrollment tokens (their answer is the token), credential writes and rotations (values
 * go in), key rotations, config reload, audit export and checkpoints (the CLI's job).
 * The admin API enforces the session's role on each of them (admin/callers.ts).
 */

/** The allowed admin routes: method and path (segments are one `[^/]+` each). */
const ALLOWED: readonly (readonly [string, RegExp])[] = [
  ['GET', /^\/v1\/health$/],
  ['GET', /^\/v1\/agents$/],
  ['POST', /^\/v1\/agents\/[^/]+\/(?:disable|enable|revoke-leases)$/],
  ['GET', /^\/v1\/leases$/],
  ['POST', /^\/v1\/leases\/revoke-all$/],
  ['POST', /^\/v1\/leases\/[^/]+\/revoke$/],
  ['GET', /^\/v1\/services$/],
  ['GET', /^\/v1\/credentials$/],
  ['GET', /^\/v1\/limits$/],
  // A service from a preset: its answer is the entry written (upstream, mechanic, the
  // credential's name and field names), never a value; it takes none.
  ['GET', /^\/v1\/presets$/],
  ['POST', /^\/v1\/services$/],
  ['POST', /^\/v1\/policy\/explain$/],
  ['GET', /^\/v1\/audit$/],
  ['GET', /^\/v1\/audit\/verify$/],
  ['GET', /^\/v1\/connections$/],
  ['POST', /^\/v1\/connections\/[^/]+$/],
  ['DELETE', /^\/v1\/connections\/[^/]+\/[^/]+$/],
  // A held request's view is its identity, route and intent: no header, query or body.
  ['GET', /^\/v1\/approvals$/],
  ['POST', /^\/v1\/approvals\/[^/]+\/(?:approve|deny)$/],
];

/** True when the console may pass `method path` to the admin API. */
export function consoleApiAllowed(method: string, path: string): boolean {
  // A dot segment (also percent-encoded, which URL parsers decode) could turn an allowed
  // path into another route.
  for (const segment of path.split('/')) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      return false;
    }
    if (decoded === '.' || decoded === '..' || decoded.includes('/')) return false;
  }
  return ALLOWED.some(([m, re]) => m === method && re.test(path));
}

/** The claims of a compact JWS, or undefined. */
function claimsOf(jwt: string): Record<string, unknown> | undefined {
  const part = jwt.split('.')[1];
  if (part === undefined) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as unknown;
    return claims !== null && typeof claims === 'object' && !Array.isArray(claims)
      ? (claims as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Rewrites a `GET /v1/audit` answer for the browser: each record's `signature.lease` (the
 * lease JWT the request was signed under) becomes `signature.lease_claims`, its decoded
 * claims. The JWT is bound to the agent's key and useless without it, but it is still a
 * token, and the console shows no token; the claims say everything an operator reads in it.
 */
export function redactAuditRecords(text: string): string {
  const body = JSON.parse(text) as { records?: Record<string, unknown>[] };
  for (const record of body.records ?? []) {
    const sig = record['signature'] as Record<string, unknown> | undefined;
    if (sig === undefined || typeof sig['lease'] !== 'string') continue;
    const { lease, ...rest } = sig;
    record['signature'] = { ...rest, lease_claims: claimsOf(lease as string) ?? null };
  }
  return JSON.stringify(body);
}
