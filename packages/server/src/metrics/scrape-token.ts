/**
 * The scrape token for `/metrics` (`admin.metrics.token_file`): a file the operator writes
 * (e.g. `openssl rand -hex 32 > .nexus/metrics.token`) and gives to Prometheus
 * (`authorization: { credentials_file: ... }`). It grants nothing but `/metrics`.
 */
import { readFileSync } from 'node:fs';
import { NexusError } from '@nexus-proxy/protocol';

/** Shortest scrape token accepted: 16 characters (a guessable token would expose metrics). */
const MIN_LENGTH = 16;

/**
 * Reads and checks the scrape token file.
 *
 * @throws NexusError `internal_error` naming the setting (never the file's content) when
 *   the file cannot be read or the token is too short or not visible ASCII.
 */
export function readScrapeToken(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new NexusError('internal_error', `admin.metrics.token_file: cannot read ${path}`);
  }
  const token = text.trim();
  if (token.length < MIN_LENGTH || token.length > 512 || !/^[\x21-\x7e]+$/.test(token)) {
    throw new NexusError(
      'internal_error',
      `admin.metrics.token_file: ${path} must hold one token of ${MIN_LENGTH} to 512 visible ASCII characters`,
    );
  }
  return token;
}
