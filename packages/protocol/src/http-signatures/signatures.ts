// RFC 9421 §2.5, §3: signature base creation, Signature-Input / Signature serialisation,
// signing and verifying. Verification rebuilds the base from the received member exactly
// (component order and parameters as received).

import type { CryptoKey } from '../webcrypto.js';
import { utf8 } from '../encoding.js';
import { NexusError, type ErrorCode } from '../errors.js';
import {
  parseDictionary,
  serializeByteSequence,
  serializeInnerList,
  serializeKey,
  type BareItem,
  type SfParameters,
} from '../structured-fields.js';
import { signBytes, verifyBytes, type SignatureAlgorithm } from './algorithms.js';
import {
  componentItem,
  deriveComponent,
  serializeComponentId,
  toComponentId,
  type ComponentId,
  type ComponentInput,
  type StructuredFieldType,
} from './components.js';
import { fieldValue, type HttpMessage } from './message.js';

/** Result of {@link createSignatureBase}. */
export interface SignatureBase {
  /** The full signature base (lines joined by LF, no trailing LF). */
  base: string;
  /** The `@signature-params` value, i.e. the Signature-Input member value. */
  signatureParams: string;
}

/** Options shared by base creation, signing and verifying. */
export interface BaseOptions {
  request?: HttpMessage;
  sfTypes?: Readonly<Record<string, StructuredFieldType>>;
  /** Code of the NexusError thrown when the base cannot be built. */
  code?: ErrorCode;
}

/**
 * Creates the RFC 9421 signature base for `components` and `params` over `message`.
 *
 * @throws NexusError (`options.code`, default `signature_invalid`) when a component is
 *   absent, repeated or malformed.
 */
export function createSignatureBase(
  message: HttpMessage,
  components: readonly ComponentId[],
  params: SfParameters,
  options: BaseOptions = {},
): SignatureBase {
  const code = options.code ?? 'signature_invalid';
  const seen = new Set<string>();
  const lines: string[] = [];
  for (const c of components) {
    const id = serializeComponentId(c);
    if (seen.has(id)) throw new NexusError(code);
    seen.add(id);
    const value = deriveComponent(c, { message, ...options, code });
    // MUST NOT let a value inject another line into the base.
    if (/[\r\n]/.test(value)) throw new NexusError(code);
    lines.push(`${id}: ${value}`);
  }
  const signatureParams = serializeInnerList({
    kind: 'inner',
    items: components.map(componentItem),
    params,
  });
  lines.push(`"@signature-params": ${signatureParams}`);
  return { base: lines.join('\n'), signatureParams };
}

/** Options of {@link signMessage}. */
export interface SignMessageOptions extends BaseOptions {
  label: string;
  components: readonly ComponentInput[];
  /** Signature parameters in the order they are serialized (created, expires, nonce, ...). */
  params: Readonly<Record<string, BareItem>> | SfParameters;
  key: CryptoKey;
  algorithm: SignatureAlgorithm;
}

/** Result of {@link signMessage}: dictionary members to put in the two header fields. */
export interface SignedMessage {
  /** `label=(...);created=...`: a Signature-Input dictionary member. */
  signatureInput: string;
  /** `label=:base64:`: a Signature dictionary member. */
  signature: string;
  signatureBase: string;
  signatureBytes: Uint8Array;
}

/**
 * Signs a message per RFC 9421.
 *
 * @example
 * const { signatureInput, signature } = await signMessage(msg, {
 *   label: 'sig1', components: ['@method', '@authority'], params: { created: 1618884473 },
 *   key, algorithm: 'ed25519' });
 */
export async function signMessage(
  message: HttpMessage,
  options: SignMessageOptions,
): Promise<SignedMessage> {
  const label = serializeKey(options.label);
  const params =
    options.params instanceof Map ? options.params : new Map(Object.entries(options.params));
  const { base, signatureParams } = createSignatureBase(
    message,
    options.components.map(toComponentId),
    params,
    { ...options, code: options.code ?? 'request_invalid' },
  );
  const sig = await signBytes(options.algorithm, options.key, utf8(base));
  return {
    signatureInput: `${label}=${signatureParams}`,
    signature: `${label}=${serializeByteSequence(sig)}`,
    signatureBase: base,
    signatureBytes: sig,
  };
}

/** One signature found in a message. */
export interface ParsedSignature {
  label: string;
  components: ComponentId[];
  params: SfParameters;
  signature: Uint8Array;
}

/**
 * Parses the Signature-Input and Signature fields of a message into signatures by label.
 *
 * @throws NexusError `signature_missing` when either field is absent, `signature_invalid`
 *   when malformed, when the labels differ, or (with `rejectDuplicateKeys`) repeated.
 */
export function parseSignatures(
  message: HttpMessage,
  options: { rejectDuplicateKeys?: boolean } = {},
): Map<string, ParsedSignature> {
  const inputValue = fieldValue(message.headers, 'signature-input');
  const sigValue = fieldValue(message.headers, 'signature');
  if (inputValue === undefined || sigValue === undefined) {
    throw new NexusError('signature_missing');
  }
  const opts = { code: 'signature_invalid' as const, ...options };
  const inputs = parseDictionary(inputValue, opts);
  const sigs = parseDictionary(sigValue, opts);
  const out = new Map<string, ParsedSignature>();
  for (const [label, member] of inputs) {
    const sigMember = sigs.get(label);
    if (member.kind !== 'inner' || !sigMember) throw new NexusError('signature_invalid');
    if (sigMember.kind !== 'item' || !(sigMember.value instanceof Uint8Array)) {
      throw new NexusError('signature_invalid');
    }
    const components = member.items.map((item) => {
      if (typeof item.value !== 'string') throw new NexusError('signature_invalid');
      return { name: item.value, params: item.params };
    });
    checkSignatureParams(member.params);
    out.set(label, {
      label,
      components,
      params: member.params,
      signature: sigMember.value,
    });
  }
  for (const label of sigs.keys()) {
    if (!inputs.has(label)) throw new NexusError('signature_invalid');
  }
  return out;
}

/** Types of the registered signature parameters (RFC 9421 §2.3). */
function checkSignatureParams(params: SfParameters): void {
  for (const [k, v] of params) {
    const ok =
      k === 'created' || k === 'expires'
        ? typeof v === 'number'
        : k === 'nonce' || k === 'alg' || k === 'keyid' || k === 'tag'
          ? typeof v === 'string'
          : true;
    if (!ok) throw new NexusError('signature_invalid');
  }
}

/** Options of {@link verifyMessage}. */
export interface VerifyMessageOptions extends BaseOptions {
  /** The label to verify; may be omitted when the message carries exactly one signature. */
  label?: string;
  key: CryptoKey;
  algorithm: SignatureAlgorithm;
  /** Seconds since the epoch; when given, a past `expires` gives `signature_expired`. */
  now?: number;
}

/** Result of a successful {@link verifyMessage}. */
export interface VerifiedMessage extends ParsedSignature {
  signatureBase: string;
  signatureParams: string;
}

/**
 * Verifies one RFC 9421 signature of a message.
 *
 * @throws NexusError `signature_missing`, `signature_invalid` or `signature_expired`.
 */
export async function verifyMessage(
  message: HttpMessage,
  options: VerifyMessageOptions,
): Promise<VerifiedMessage> {
  const all = parseSignatures(message);
  let sig: ParsedSignature | undefined;
  if (options.label !== undefined) sig = all.get(options.label);
  else if (all.size === 1) sig = all.values().next().value;
  if (!sig) throw new NexusError('signature_invalid');
  const alg = sig.params.get('alg');
  if (alg !== undefined && alg !== options.algorithm) throw new NexusError('signature_invalid');
  if (options.now !== undefined) {
    const expires = sig.params.get('expires');
    if (typeof expires === 'number' && options.now > expires) {
      throw new NexusError('signature_expired');
    }
  }
  const { base, signatureParams } = createSignatureBase(message, sig.components, sig.params, {
    ...options,
    code: 'signature_invalid',
  });
  const ok = await verifyBytes(options.algorithm, options.key, utf8(base), sig.signature);
  if (!ok) throw new NexusError('signature_invalid');
  return { ...sig, signatureBase: base, signatureParams };
}
