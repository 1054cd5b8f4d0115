/**
 * The process logger (pino). Log lines carry ids, codes and counts only: never a header
 * value, a body, a token or a credential. The redact list is a second line of defence for
 * fields that must never appear even if a caller slips.
 */
import { pino, type Logger as PinoLogger, type DestinationStream } from 'pino';

export type Logger = PinoLogger;

export function createLogger(level: string, destination?: DestinationStream): Logger {
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
    destination ?? pino.destination({ dest: 2, sync: false }),
  );
}
