/**
 * `GET /metrics` on the admin listener: the Prometheus text exposition.
 *
 * Access (`admin.metrics.auth`): `token` (the default) wants `Authorization: Bearer` with
 * either the scrape token (the file named by `admin.metrics.token_file`, which grants
 * nothing but this endpoint) or an operator token; `none` serves anyone who reaches the
 * admin listener (for a listener on loopback or a private scrape network).
 *
 * MUST: the scrape token is compared in constant time and never logged. The body holds
 * counts and timings under bounded labels only (metrics/metrics.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { NexusError } from '@nexus-proxy/protocol';
import { sendProblem } from '../proxy/problem.js';
import { timingSafeEqualString } from '../util/timing-safe.js';
import type { NexusMetrics } from './metrics.js';

export interface MetricsEndpointOptions {
  readonly metrics: NexusMetrics;
  readonly auth: 'token' | 'none';
  /** The scrape token (from `admin.metrics.token_file`), if one is configured. */
  readonly scrapeToken?: string;
  /** True when `header` is a valid operator token's `Authorization` header. */
  readonly isOperator: (req: IncomingMessage) => Promise<boolean>;
}

/** The path the endpoint answers on. */
export const METRICS_PATH = '/metrics';

/** Builds the handler; `requestId` comes from the admin handler. */
export function createMetricsEndpoint(options: MetricsEndpointOptions) {
  const { metrics, scrapeToken } = options;

  async function authorised(req: IncomingMessage): Promise<boolean> {
    if (options.auth === 'none') return true;
    const m = /^Bearer ([\x21-\x7e]{1,512})$/.exec(req.headers.authorization ?? '');
    if (m === null) return false;
    if (scrapeToken !== undefined && timingSafeEqualString(m[1] as string, scrapeToken)) {
      return true;
    }
    return options.isOperator(req);
  }

  return async function handle(
    req: IncomingMessage,
    res: ServerResponse,
    requestId: string,
  ): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendProblem(res, new NexusError('method_not_allowed'), requestId, false);
      return;
    }
    if (!(await authorised(req))) {
      sendProblem(res, new NexusError('unauthorized'), requestId, false);
      return;
    }
    const { contentType, body } = await metrics.render();
    res.writeHead(200, {
      'content-type': contentType,
      'cache-control': 'no-store',
      'content-length': Buffer.byteLength(body),
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
}
