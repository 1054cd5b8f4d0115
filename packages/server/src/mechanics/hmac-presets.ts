/**
 * Named HMAC option sets for well-known request-signing schemes. A service selects one with
 * `auth: { type: hmac, preset: <name>, credential: ... }` and may override any option.
 */

/** The options a preset may fill in (the `hmac` options minus `credential` and `preset`). */
export interface HmacPreset {
  readonly algorithm: 'sha256' | 'sha512' | 'sha1';
  readonly string_to_sign: string | readonly string[];
  readonly signature_header: string;
  readonly signature_template?: string;
  readonly timestamp_header?: string;
  readonly timestamp_format?: 'unix' | 'unix_ms' | 'iso';
  readonly encoding?: 'hex' | 'base64';
  readonly secret_encoding?: 'utf8' | 'base64' | 'hex';
  readonly key_id_header?: string;
  readonly nonce_header?: string;
  readonly credential_headers?: Readonly<Record<string, string>>;
}

/**
 * Built-in presets.
 *
 * - `stripe-webhook`: Stripe's webhook signature, for posting signed events to a receiver
 *   that verifies them like Stripe's libraries do:
 *   `Stripe-Signature: t=<unix>,v1=hex(HMAC-SHA256(secret, "<t>.<raw body>"))`.
 * - `github-webhook`: `X-Hub-Signature-256: sha256=hex(HMAC-SHA256(secret, raw body))`.
 * - `coinbase-exchange`: Coinbase Exchange REST API key auth: `CB-ACCESS-SIGN =
 *   base64(HMAC-SHA256(base64decode(secret), timestamp + METHOD + path?query + body))` with
 *   `CB-ACCESS-KEY` (field `key_id`), `CB-ACCESS-TIMESTAMP` (unix seconds) and
 *   `CB-ACCESS-PASSPHRASE` (field `passphrase`).
 * - `coinbase-v2`: Coinbase's legacy API-key scheme: same prehash, hex HMAC-SHA256 with the
 *   secret used as text, `CB-ACCESS-KEY`, `CB-ACCESS-TIMESTAMP`.
 */
export const HMAC_PRESETS = {
  'stripe-webhook': {
    algorithm: 'sha256',
    string_to_sign: '{{timestamp}}.{{body}}',
    signature_header: 'stripe-signature',
    signature_template: 't={{timestamp}},v1={{signature}}',
    timestamp_format: 'unix',
    encoding: 'hex',
  },
  'github-webhook': {
    algorithm: 'sha256',
    string_to_sign: '{{body}}',
    signature_header: 'x-hub-signature-256',
    signature_template: 'sha256={{signature}}',
    encoding: 'hex',
  },
  'coinbase-exchange': {
    algorithm: 'sha256',
    string_to_sign: '{{timestamp}}{{method}}{{request_target}}{{body}}',
    signature_header: 'cb-access-sign',
    timestamp_header: 'cb-access-timestamp',
    timestamp_format: 'unix',
    encoding: 'base64',
    secret_encoding: 'base64',
    key_id_header: 'cb-access-key',
    credential_headers: { 'cb-access-passphrase': 'passphrase' },
  },
  'coinbase-v2': {
    algorithm: 'sha256',
    string_to_sign: '{{timestamp}}{{method}}{{request_target}}{{body}}',
    signature_header: 'cb-access-sign',
    timestamp_header: 'cb-access-timestamp',
    timestamp_format: 'unix',
    encoding: 'hex',
    key_id_header: 'cb-access-key',
  },
} as const satisfies Record<string, HmacPreset>;

/** A preset name. */
export type HmacPresetName = keyof typeof HMAC_PRESETS;

/** Every preset name, for the options schema. */
export const HMAC_PRESET_NAMES = Object.keys(HMAC_PRESETS) as [HmacPresetName, ...HmacPresetName[]];
