/**
 * The SDK's error: a stable `code` from the Nexus error table (or a client-side code such
 * as `proxy_unreachable`), the HTTP status and the proxy's request id when there was one.
 */
export class NexusAgentError extends Error {
  override readonly name = 'NexusAgentError';
  readonly code: string;
  readonly status: number | undefined;
  readonly requestId: string | undefined;

  constructor(
    code: string,
    message: string,
    options: { status?: number; requestId?: string; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.code = code;
    this.status = options.status;
    this.requestId = options.requestId;
  }
}

/** Turns a problem+json response from Nexus into a NexusAgentError. */
export async function errorFromResponse(res: Response): Promise<NexusAgentError> {
  let code = res.headers.get('nexus-error') ?? 'unknown_error';
  let title = `Nexus answered ${res.status}`;
  let requestId = res.headers.get('nexus-request-id') ?? undefined;
  try {
    const body = (await res.json()) as { code?: unknown; title?: unknown; request_id?: unknown };
    if (typeof body.code === 'string') code = body.code;
    if (typeof body.title === 'string') title = body.title;
    if (typeof body.request_id === 'string') requestId = body.request_id;
  } catch {
    // not JSON: keep the header values
  }
  return new NexusAgentError(code, `${code}: ${title}`, { status: res.status, requestId });
}
