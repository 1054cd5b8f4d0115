/**
 * The SDK's error: a stable `code` from the Nexus error table (or a client-side code such
 * as `proxy_unreachable`), the HTTP status and the proxy's request id when there was one.
 */
export class NexusAgentError extends Error {
  override readonly name = 'NexusAgentError';
  readonly code: string;
  readonly status: number | undefined;
  readonly requestId: string | undefined;
  /**
   * The problem's `detail`: what failed, in words an operator can act on (which
   * credential is not set, DNS vs refused vs TLS for an unreachable upstream...). For
   * people and logs; dispatch on `code`.
   */
  readonly detail: string | undefined;

  constructor(
    code: string,
    message: string,
    options: { status?: number; requestId?: string; detail?: string; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.code = code;
    this.status = options.status;
    this.requestId = options.requestId;
    this.detail = options.detail;
  }
}

/**
 * The code of a refusal by Nexus itself, or undefined for any other response (an upstream's
 * answer relayed by the proxy, whatever its status or body).
 *
 * Only Nexus sets `Nexus-Error`: the proxy removes every `Nexus-*` field of an upstream's
 * response (spec §13.2), so a problem body that imitates Nexus, or a forged header, can
 * never make an upstream's answer look like a Nexus refusal. MUST NOT look at the body for
 * this decision: the body of a relayed response is the upstream's.
 */
export function nexusRefusalCode(res: Response): string | undefined {
  const code = res.headers.get('nexus-error');
  if (code === null || !/^[a-z][a-z0-9_]{0,63}$/.test(code)) return undefined;
  return code;
}

/**
 * Turns a refusal by Nexus (see {@link nexusRefusalCode}) into a NexusAgentError: the code
 * of `Nexus-Error`; the problem's `title`, `detail` and `request_id` when its body is the
 * matching problem. Also used for the Authority's own endpoints.
 */
export async function errorFromResponse(res: Response): Promise<NexusAgentError> {
  const header = nexusRefusalCode(res);
  let code = header ?? 'unknown_error';
  let title = `Nexus answered ${res.status}`;
  let requestId = res.headers.get('nexus-request-id') ?? undefined;
  let detail: string | undefined;
  try {
    const json = (await res.json()) as {
      code?: unknown;
      title?: unknown;
      detail?: unknown;
      request_id?: unknown;
      error?: { data?: { code?: unknown; detail?: unknown; request_id?: unknown } };
    };
    // A refusal of an MCP message is a JSON-RPC error whose `data` holds the problem's fields.
    const body =
      typeof json.error?.data === 'object' && json.error.data !== null ? json.error.data : json;
    // The header decides the code; a body that disagrees with it is not this refusal's.
    if (typeof body.code === 'string' && (header === undefined || body.code === header)) {
      code = body.code;
      if ('title' in body && typeof body.title === 'string') title = body.title;
      if (typeof body.detail === 'string') detail = body.detail;
      if (typeof body.request_id === 'string') requestId = body.request_id;
    }
  } catch {
    // not JSON: keep the header values
  }
  return new NexusAgentError(code, `${code}: ${detail ?? title}`, {
    status: res.status,
    requestId,
    detail,
  });
}
