/**
 * The process logger (pino). Log lines carry ids, codes and counts only: never a header
 * value, a body, a token or a credential. The redact list is a second line of defence for
 * fields that must never appear even if a caller slips.
 */
import { pino, type Logger as PinoLogger, type DestinationStream } from 'pino';
import { PinoPretty } from 'pino-pretty';

export type Logger = PinoLogger;

/**
 * The process logger on stderr (or `destination`). `format: 'pretty'` (`log.format`) writes
 * human-readable lines through pino-pretty instead of JSON; the redaction is the same.
 */
export function createLogger(
  level: string,
  destination?: DestinationStream,
  format: 'json' | 'pretty' = 'json',
): Logger {
  const out =
    destination ??
    (format === 'pretty'
      ? PinoPretty({ destination: 2, colorize: false, sync: false, ignore: 'pid,hostname' })
      : pino.destination({ dest: 2, sync: false }));
  return pino(
    {
      level,
      base: { service: 'nexus' },
      redact: {
        paths: [
          'headers',
          'authorization',
          'token',
          'lease',
          'secret',
          'value',
          'fields',
          '*.authorization',
          '*.token',
          '*.lease',
          '*.secret',
          '*.value',
          '*.fields',
          '*.headers',
        ],
        censor: '[REDACTED]',
      },
    },
    out,
  );
}
