// Vault start-up errors: the master key is missing, malformed, exposed or wrong. Runtime
// failures use `NexusError` (`credential_unavailable`, `not_found`, `validation_failed`,
// `conflict`). Messages name the key SOURCE (env variable or file path), MUST NOT
// contain key material.

/** Codes only the vault raises, at start-up or master-key rotation. */
export type VaultErrorCode =
  /** Neither NEXUS_MASTER_KEY nor the key file provides a master key. */
  | 'master_key_missing'
  /** The master key does not open this store's key check (wrong key for this store). */
  | 'master_key_mismatch'
  /** The master key value or key file is malformed (not v<N>:<base64 of 32 bytes>). */
  | 'master_key_invalid'
  /** The key file is readable or writable by group or others. */
  | 'master_key_insecure';

/** A vault start-up error with a stable `code` (same shape as `NexusError`). */
export class VaultError extends Error {
  /** Stable machine-readable code; tests and callers switch on this, never on `message`. */
  readonly code: VaultErrorCode;
  /** Always 500: a start-up failure, not a client error. */
  readonly status = 500;
  /** Never shown to a client. */
  readonly expose = false;

  constructor(code: VaultErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'VaultError';
    this.code = code;
  }
}
