/**
 * The access log: one `info` line per proxied request (`log.access`, on by default), from
 * the pipeline's request summary.
 *
 * MUST: the line holds ids, names, numbers and codes only: never a header, a body, the
 * query, the intent or a credential. The path is the normalised path without its query
 * (the audit record holds the same).
 */
import type { Logger } from '../util/logger.js';
import type { PipelineObserver } from './observe.js';

/** An observer that writes the access log line of each finished request. */
export function accessLog(logger: Logger): PipelineObserver {
  return {
    stage() {},
    finished(s) {
      // Below the log level (e.g. `log.level: warn`) the line is not even built.
      if (!logger.isLevelEnabled('info')) return;
      logger.info(
        {
          access: {
            request_id: s.requestId,
            agent: s.agent,
            service: s.service,
            method: s.method,
            path: s.path,
            status: s.status,
            decision: s.decision,
            code: s.code,
            upstream_status: s.upstreamStatus,
            bytes_in: s.bytesIn,
            bytes_out: s.bytesOut,
            redactions: s.redactions,
            ...(s.cost === undefined ? {} : { cost: s.cost }),
            duration_ms: Math.round(s.seconds * 10_000) / 10,
          },
        },
        'request',
      );
    },
  };
}
