/**
 * Start-up errors of the two listeners, said in the operator's terms: which address, which
 * nexus.yaml setting to change, and the likely cause. The system's message is not repeated
 * (it says `listen EADDRINUSE` and nothing about the config).
 */
import type { ListenAddress } from '../config/units.js';
import { formatListen } from '../config/units.js';

/** A listener could not be bound: `address_in_use`, `listen_denied` or `listen_failed`. */
export class ListenError extends Error {
  override readonly name = 'ListenError';
  readonly code: 'address_in_use' | 'listen_denied' | 'listen_failed';

  constructor(code: ListenError['code'], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/**
 * Explains a failed `listen` on `addr` for the setting that chose it (`proxy.listen`,
 * `admin.listen`).
 */
export function listenError(err: unknown, setting: string, addr: ListenAddress): ListenError {
  const where = formatListen(addr);
  const code = (err as { code?: unknown })?.code;
  switch (code) {
    case 'EADDRINUSE':
      return new ListenError(
        'address_in_use',
        `cannot listen on ${where} (${setting}): the address is already in use, by another program or another \`nexus up\`. Stop it, or change ${setting} in nexus.yaml (\`nexus init --port\` picks other ports)`,
        { cause: err },
      );
    case 'EACCES':
      return new ListenError(
        'listen_denied',
        `cannot listen on ${where} (${setting}): permission denied (ports below 1024 need privileges). Change ${setting} in nexus.yaml`,
        { cause: err },
      );
    case 'EADDRNOTAVAIL':
      return new ListenError(
        'listen_failed',
        `cannot listen on ${where} (${setting}): no such address on this host. Change ${setting} in nexus.yaml`,
        { cause: err },
      );
    default:
      return new ListenError(
        'listen_failed',
        `cannot listen on ${where} (${setting})${typeof code === 'string' ? ` (${code})` : ''}. Check ${setting} in nexus.yaml`,
        { cause: err },
      );
  }
}
