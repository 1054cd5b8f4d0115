// A string that does not print: JSON, util.inspect and String() all show `[redacted]`.
// Used for secrets that pass through config (NEXUS_MASTER_KEY) so a config dump is safe.
import { inspect } from 'node:util';

/** Wraps a secret string; read it only with {@link RedactedString.reveal}. */
export class RedactedString {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
    Object.freeze(this);
  }

  /** The secret. MUST NOT be logged or put in an error. */
  reveal(): string {
    return this.#value;
  }

  toJSON(): string {
    return '[redacted]';
  }

  toString(): string {
    return '[redacted]';
  }

  [inspect.custom](): string {
    return '[redacted]';
  }
}
